//! Topic names and topic patterns.
//!
//! A [`TopicName`] is validated once, at the edge, and is cheap to clone (`Arc<str>`); nothing
//! past the protocol layer handles an unvalidated topic string. A [`TopicPattern`] matches
//! names segment by segment, NATS style: `*` matches exactly one segment, a trailing `>` one or
//! more segments. Patterns appear in token claims (who may subscribe or publish what) and in
//! topic declarations.

use std::fmt;
use std::sync::Arc;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Most segments in a topic name.
pub const MAX_TOPIC_DEPTH: usize = 16;

/// Why a topic name or pattern was rejected (answered as `invalid_argument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty string.
    #[error("topic must not be empty")]
    Empty,
    /// Over [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is {0} bytes long; the limit is {MAX_TOPIC_LEN}")]
    TooLong(usize),
    /// Over [`MAX_TOPIC_DEPTH`] segments.
    #[error("topic has {0} segments; the limit is {MAX_TOPIC_DEPTH}")]
    TooDeep(usize),
    /// `a//b`, a leading or a trailing `/`.
    #[error("topic has an empty segment (leading, trailing or doubled '/')")]
    EmptySegment,
    /// A character outside `A-Z a-z 0-9 _ - . : @ =`.
    #[error("topic contains {0:?}; allowed are letters, digits and _ - . : @ = with '/' between segments")]
    BadChar(char),
    /// A pattern with `>` anywhere but as the whole last segment, or `*` inside a segment.
    #[error("wildcards must be whole segments, and '>' only the last one")]
    BadWildcard,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '=')
}

fn check_shape(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(s.len()));
    }
    let depth = s.split('/').count();
    if depth > MAX_TOPIC_DEPTH {
        return Err(TopicError::TooDeep(depth));
    }
    if s.split('/').any(str::is_empty) {
        return Err(TopicError::EmptySegment);
    }
    Ok(())
}

/// A validated, hierarchical topic name such as `telemetry/car-7/engine`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `s` as a topic name.
    ///
    /// # Errors
    /// [`TopicError`] naming the first rule broken.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        check_shape(s)?;
        if let Some(c) = s.chars().find(|&c| c != '/' && !allowed(c)) {
            return Err(TopicError::BadChar(c));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Segments of the name.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for TopicName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    One,
    Rest,
}

/// A topic pattern: `video/*`, `telemetry/>`, `>` (everything), or a plain name.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicPattern {
    raw: Box<str>,
    segs: Box<[Seg]>,
}

impl TopicPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`TopicError`] when the shape or characters are invalid, or a wildcard is misplaced.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        check_shape(s)?;
        let parts: Vec<&str> = s.split('/').collect();
        let mut segs = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let seg = match *p {
                "*" => Seg::One,
                ">" if i == parts.len() - 1 => Seg::Rest,
                p if p.contains(['*', '>']) => return Err(TopicError::BadWildcard),
                p => {
                    if let Some(c) = p.chars().find(|&c| !allowed(c)) {
                        return Err(TopicError::BadChar(c));
                    }
                    Seg::Lit(p.into())
                }
            };
            segs.push(seg);
        }
        Ok(Self { raw: s.into(), segs: segs.into() })
    }

    /// Whether `topic` matches this pattern.
    pub fn matches(&self, topic: &TopicName) -> bool {
        let mut names = topic.segments();
        for seg in self.segs.iter() {
            match seg {
                Seg::Rest => return names.next().is_some(),
                Seg::One => {
                    if names.next().is_none() {
                        return false;
                    }
                }
                Seg::Lit(l) => {
                    if names.next() != Some(&**l) {
                        return false;
                    }
                }
            }
        }
        names.next().is_none()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.raw, f)
    }
}

/// True when any pattern in `patterns` matches `topic`.
pub fn any_matches(patterns: &[TopicPattern], topic: &TopicName) -> bool {
    patterns.iter().any(|p| p.matches(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    #[test]
    fn valid_names() {
        for s in ["a", "a/b/c", "vehicle-telemetry/race-2024:001/engine.rpm", "x_y/z@1/k=v"] {
            assert_eq!(t(s).as_str(), s);
        }
    }

    #[test]
    fn invalid_names_name_the_rule() {
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a//b"), Err(TopicError::EmptySegment));
        assert_eq!(TopicName::new("/a"), Err(TopicError::EmptySegment));
        assert_eq!(TopicName::new("a/"), Err(TopicError::EmptySegment));
        assert_eq!(TopicName::new("a b"), Err(TopicError::BadChar(' ')));
        assert_eq!(TopicName::new("a/*"), Err(TopicError::BadChar('*')));
        assert_eq!(TopicName::new("a/>"), Err(TopicError::BadChar('>')));
        assert_eq!(TopicName::new("ä"), Err(TopicError::BadChar('ä')));
        assert_eq!(TopicName::new(&"a".repeat(256)), Err(TopicError::TooLong(256)));
        assert_eq!(TopicName::new(&["a"; 17].join("/")), Err(TopicError::TooDeep(17)));
        assert!(TopicName::new(&["a"; 16].join("/")).is_ok());
    }

    #[test]
    fn patterns_match_by_segment() {
        let p = |s| TopicPattern::new(s).unwrap();
        assert!(p("video/*").matches(&t("video/cam1")));
        assert!(!p("video/*").matches(&t("video/cam1/hd")));
        assert!(!p("video/*").matches(&t("video")));
        assert!(p("telemetry/>").matches(&t("telemetry/a/b/c")));
        assert!(!p("telemetry/>").matches(&t("telemetry")));
        assert!(p(">").matches(&t("anything/at/all")));
        assert!(p("a/*/c").matches(&t("a/b/c")));
        assert!(!p("a/*/c").matches(&t("a/b/d")));
        assert!(p("exact/name").matches(&t("exact/name")));
        assert!(!p("exact/name").matches(&t("exact/name/more")));
    }

    #[test]
    fn misplaced_wildcards_are_rejected() {
        assert_eq!(TopicPattern::new("a/>/b"), Err(TopicError::BadWildcard));
        assert_eq!(TopicPattern::new("a/b*"), Err(TopicError::BadWildcard));
        assert_eq!(TopicPattern::new("a/>x"), Err(TopicError::BadWildcard));
    }
}
