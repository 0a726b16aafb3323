//! The video page (`/video`) in headless Debian Chromium (playwright-core, never a downloaded
//! browser), against a real hub with the demo publisher on. `web-demo/ci-setup.sh` installs
//! Chromium and playwright-core.
