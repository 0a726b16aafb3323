//! The `SessionManager`: JWT verification into an [`Identity`], token minting, API keys.
//!
//! Owns every secret; raw tokens and keys never leave this module (errors carry a reason, never
//! the token). Claims: `sub` (required), `exp` (required), `nbf`, `iss`, `aud`, and fanhub's
//! `subscribe` / `publish` arrays of topic patterns (`video/*`, `telemetry/>`); tokens without
//! them get `auth.default_subscribe` / `auth.default_publish`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, DEV_SECRET};
use crate::hub::{AuthFailure, Identity, TopicPattern};

/// Claims fanhub reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: user or service id.
    pub sub: String,
    /// Expiry, seconds since the UNIX epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (string or array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Topic patterns the bearer may subscribe to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Topic patterns the bearer may publish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
}

/// A failed authentication: the reason (for the client and metrics) and a safe detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct AuthError {
    /// Category.
    pub reason: AuthFailure,
    /// Human-readable detail (never contains the token).
    pub detail: String,
}

impl AuthError {
    fn new(reason: AuthFailure, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// What to put in a minted token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MintRequest {
    /// Subject.
    pub subject: String,
    /// Subscribe patterns.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Publish patterns.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
}

/// A minted token.
#[derive(Debug, Clone, Serialize)]
pub struct MintedToken {
    /// The JWT.
    pub token: String,
    /// Expiry, seconds since the UNIX epoch.
    pub expires_at: u64,
}

/// Verifies and mints tokens and checks API keys.
pub struct SessionManager {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    algorithm: Algorithm,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    default_subscribe: Vec<TopicPattern>,
    default_publish: Vec<TopicPattern>,
    api_keys: Vec<String>,
    admin_tokens: Vec<String>,
    dev: bool,
    leeway: u64,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("algorithm", &self.algorithm)
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

/// Seconds since the UNIX epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SessionManager {
    /// Builds the manager from `[auth]`, reading key files.
    ///
    /// # Errors
    /// A message naming the key file or setting that is unusable.
    pub fn new(cfg: &AuthConfig) -> Result<Self, String> {
        let algorithm = match cfg.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(format!("auth.algorithm: unsupported {other}")),
        };
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let (decoding, encoding) = match algorithm {
            Algorithm::HS256 => {
                let secret = cfg.hs256_secret.as_deref().unwrap_or(DEV_SECRET).as_bytes();
                (DecodingKey::from_secret(secret), Some(EncodingKey::from_secret(secret)))
            }
            _ => {
                let public = cfg.public_key_pem.as_deref().ok_or("auth.public_key_pem is required")?;
                let pem = read(public)?;
                let dec = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                }
                .map_err(|e| format!("auth.public_key_pem: {e}"))?;
                let enc = match &cfg.private_key_pem {
                    Some(p) => {
                        let pem = read(p)?;
                        Some(
                            if algorithm == Algorithm::RS256 {
                                EncodingKey::from_rsa_pem(&pem)
                            } else {
                                EncodingKey::from_ec_pem(&pem)
                            }
                            .map_err(|e| format!("auth.private_key_pem: {e}"))?,
                        )
                    }
                    None => None,
                };
                (dec, enc)
            }
        };
        // `exp` and `nbf` are checked against the `now` each caller passes (see `verify`), not
        // against jsonwebtoken's own clock read.
        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // jsonwebtoken checks `aud`/`iss` only when the token carries them: a configured
        // audience or issuer must also be a required claim, or a token without it would pass.
        let mut required = vec!["exp", "sub"];
        match &cfg.audience {
            Some(a) => {
                validation.set_audience(&[a]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let patterns = |v: &[String], key: &str| -> Result<Vec<TopicPattern>, String> {
            v.iter().map(|p| TopicPattern::new(p).map_err(|e| format!("{key}: {p:?}: {e}"))).collect()
        };
        Ok(Self {
            decoding,
            encoding,
            algorithm,
            validation,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            default_subscribe: patterns(&cfg.default_subscribe, "auth.default_subscribe")?,
            default_publish: patterns(&cfg.default_publish, "auth.default_publish")?,
            api_keys: cfg.api_keys.clone(),
            admin_tokens: cfg.admin_tokens.clone(),
            dev: cfg.is_dev(),
            leeway: cfg.leeway_secs,
        })
    }

    /// True when running on the built-in development secret.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// Verifies a token (signature, `iss`, `aud`, and `exp` and `nbf` against `now`, seconds
    /// since the UNIX epoch, with the configured leeway) and returns who it names and what it
    /// allows.
    ///
    /// # Errors
    /// [`AuthError`] with the failure category.
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::new(AuthFailure::Missing, "no token given"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            let (reason, detail) = match e.kind() {
                ErrorKind::ExpiredSignature => (AuthFailure::Expired, "token has expired"),
                ErrorKind::ImmatureSignature => (AuthFailure::NotYetValid, "token is not valid yet (nbf)"),
                ErrorKind::InvalidSignature => (AuthFailure::BadSignature, "token signature does not verify"),
                ErrorKind::InvalidAlgorithm => (AuthFailure::BadSignature, "token is signed with another algorithm"),
                ErrorKind::InvalidIssuer => (AuthFailure::WrongIssuer, "token issuer is not accepted"),
                ErrorKind::InvalidAudience => (AuthFailure::WrongAudience, "token audience is not this hub"),
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                    (AuthFailure::WrongAudience, "token has no audience (aud) and this hub requires one")
                }
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
                    (AuthFailure::WrongIssuer, "token has no issuer (iss) and this hub requires one")
                }
                ErrorKind::MissingRequiredClaim(_) => {
                    (AuthFailure::Malformed, "token lacks a required claim (sub or exp)")
                }
                _ => (AuthFailure::Malformed, "token is not a well-formed JWT"),
            };
            AuthError::new(reason, detail)
        })?;
        let c = data.claims;
        if c.exp.saturating_add(self.leeway) < now {
            return Err(AuthError::new(AuthFailure::Expired, "token has expired"));
        }
        if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::new(AuthFailure::NotYetValid, "token is not valid yet (nbf)"));
        }
        let patterns = |v: Option<Vec<String>>, default: &[TopicPattern]| -> Result<Vec<TopicPattern>, AuthError> {
            match v {
                None => Ok(default.to_vec()),
                Some(v) => v
                    .iter()
                    .map(|p| {
                        TopicPattern::new(p).map_err(|e| {
                            AuthError::new(AuthFailure::Malformed, format!("bad topic pattern in claims: {e}"))
                        })
                    })
                    .collect(),
            }
        };
        Ok(Identity {
            subscribe: patterns(c.subscribe, &self.default_subscribe)?,
            publish: patterns(c.publish, &self.default_publish)?,
            subject: c.sub,
            expires_at: Some(c.exp),
        })
    }

    /// Mints a token for `req` valid from `now` (seconds since the UNIX epoch).
    ///
    /// # Errors
    /// When no signing key is configured or a pattern is invalid.
    pub fn mint(&self, req: &MintRequest, now: u64) -> Result<MintedToken, String> {
        let key = self.encoding.as_ref().ok_or("no signing key configured (auth.private_key_pem)")?;
        if req.subject.is_empty() {
            return Err("subject must not be empty".into());
        }
        for p in req.subscribe.iter().chain(&req.publish) {
            TopicPattern::new(p).map_err(|e| format!("pattern {p:?}: {e}"))?;
        }
        let exp = now + req.ttl_secs;
        let claims = Claims {
            sub: req.subject.clone(),
            exp,
            iat: Some(now),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
            subscribe: Some(req.subscribe.clone()),
            publish: Some(req.publish.clone()),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())?;
        Ok(MintedToken { token, expires_at: exp })
    }

    /// Whether `key` is a configured API key (constant-time comparison).
    pub fn check_api_key(&self, key: &str) -> bool {
        self.api_keys.iter().any(|k| ct_eq(k.as_bytes(), key.as_bytes()))
    }

    /// Whether `token` is a configured admin token (constant-time comparison).
    pub fn check_admin_token(&self, token: &str) -> bool {
        self.admin_tokens.iter().any(|k| ct_eq(k.as_bytes(), token.as_bytes()))
    }
}

/// Compares without an early exit, so timing does not reveal a key's prefix.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::TopicName;

    /// Time is passed in: every check runs at this instant, whatever the machine's clock says.
    const NOW: u64 = 1_800_000_000;

    fn mgr(cfg: AuthConfig) -> SessionManager {
        SessionManager::new(&cfg).unwrap()
    }

    fn mint(m: &SessionManager, ttl: u64) -> String {
        m.mint(
            &MintRequest { subject: "alice".into(), subscribe: vec!["video/*".into()], publish: vec![], ttl_secs: ttl },
            NOW,
        )
        .unwrap()
        .token
    }

    #[test]
    fn round_trip_carries_claims() {
        let m = mgr(AuthConfig::default());
        let id = m.verify(&mint(&m, 60), NOW).unwrap();
        assert_eq!(id.subject, "alice");
        assert!(id.can_subscribe(&TopicName::new("video/a").unwrap()));
        assert!(!id.can_publish(&TopicName::new("video/a").unwrap()));
    }

    #[test]
    fn failures_are_classified() {
        let m = mgr(AuthConfig::default());
        assert_eq!(m.verify("", NOW).unwrap_err().reason, AuthFailure::Missing);
        assert_eq!(m.verify("not-a-jwt", NOW).unwrap_err().reason, AuthFailure::Malformed);
        let other = mgr(AuthConfig { hs256_secret: Some("another-secret-of-length".into()), ..Default::default() });
        assert_eq!(m.verify(&mint(&other, 60), NOW).unwrap_err().reason, AuthFailure::BadSignature);
        let expired =
            m.mint(&MintRequest { subject: "a".into(), ttl_secs: 1, ..Default::default() }, NOW - 3600).unwrap().token;
        assert_eq!(m.verify(&expired, NOW).unwrap_err().reason, AuthFailure::Expired);
        let aud = mgr(AuthConfig { audience: Some("fanhub".into()), ..Default::default() });
        let wrong_aud = mgr(AuthConfig { audience: Some("elsewhere".into()), ..Default::default() });
        assert_eq!(aud.verify(&mint(&wrong_aud, 60), NOW).unwrap_err().reason, AuthFailure::WrongAudience);
        assert!(aud.verify(&mint(&aud, 60), NOW).is_ok());
        let iss = mgr(AuthConfig { issuer: Some("me".into()), ..Default::default() });
        let wrong_iss = mgr(AuthConfig { issuer: Some("them".into()), ..Default::default() });
        assert_eq!(iss.verify(&mint(&wrong_iss, 60), NOW).unwrap_err().reason, AuthFailure::WrongIssuer);
    }

    #[test]
    fn expiry_is_judged_at_the_time_passed_in_with_the_leeway() {
        let m = mgr(AuthConfig { leeway_secs: 5, ..Default::default() });
        let t = mint(&m, 60);
        assert!(m.verify(&t, NOW + 60).is_ok());
        assert!(m.verify(&t, NOW + 65).is_ok(), "within the leeway");
        assert_eq!(m.verify(&t, NOW + 66).unwrap_err().reason, AuthFailure::Expired);
    }

    #[test]
    fn not_yet_valid_tokens_are_refused() {
        let m = mgr(AuthConfig { leeway_secs: 0, ..Default::default() });
        let claims = Claims {
            sub: "a".into(),
            exp: NOW + 3600,
            iat: None,
            nbf: Some(NOW + 600),
            iss: None,
            aud: None,
            subscribe: None,
            publish: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(DEV_SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(m.verify(&t, NOW).unwrap_err().reason, AuthFailure::NotYetValid);
    }

    #[test]
    fn defaults_apply_without_claims_and_keys_compare() {
        let m = mgr(AuthConfig {
            default_subscribe: vec!["public/>".into()],
            api_keys: vec!["key-1".into()],
            ..Default::default()
        });
        let claims = Claims {
            sub: "a".into(),
            exp: NOW + 60,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
            subscribe: None,
            publish: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(DEV_SECRET.as_bytes()),
        )
        .unwrap();
        let id = m.verify(&t, NOW).unwrap();
        assert!(id.can_subscribe(&TopicName::new("public/x").unwrap()));
        assert!(m.check_api_key("key-1"));
        assert!(!m.check_api_key("key-2"));
        assert!(!m.check_admin_token(""));
    }
}
