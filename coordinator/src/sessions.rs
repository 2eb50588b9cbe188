//! The web console's sessions (`crate::console`): held in this replica's
//! memory (a session is per replica: behind a load balancer, pin a browser
//! to one replica, or sign in again on another), each for a fixed lifetime from sign-in
//! (`tether serve --console-session-lifetime`).
//!
//! A session keeps what the credential was (an operator token's SHA-256,
//! or an access key's ID: never a secret) and is checked again against the
//! store at every request, so a revoked token, a deactivated key or a
//! deleted user ends it at once. The cookie carries a random session ID;
//! the map is keyed by its SHA-256. Each session has its own CSRF token,
//! which every POST must carry.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tether_ssm::limits;
use tether_util::time::now_ms;

/// The credential a session was opened with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// An operator token, by its hash (`credentials::token_hash`).
    Token { hash: String },
    /// An access key pair, by its key ID.
    AccessKey { access_key_id: String },
}

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub login: Login,
    /// Who it stands for, as ConsoleLogin answered (shown in the header).
    pub principal_arn: String,
    /// Must come back with every POST (a form field or `X-CSRF-Token`).
    pub csrf: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// The sessions of this replica.
#[derive(Debug)]
pub struct Sessions {
    lifetime: Duration,
    map: Mutex<HashMap<String, Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(limits::CONSOLE_SESSION_LIFETIME)
    }
}

/// Why a cookie did not open a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No such session (never, or signed out).
    Unknown,
    /// It was, and its lifetime is over.
    Expired,
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Opens a session; returns its ID (the cookie's value). Expired
    /// sessions are dropped first; past [`limits::CONSOLE_MAX_SESSIONS`] the
    /// oldest goes.
    pub fn open(&self, login: Login, principal_arn: String) -> (String, Session) {
        let now = now_ms();
        let id = random_token();
        let session = Session {
            login,
            principal_arn,
            csrf: random_token(),
            created_ms: now,
            expires_ms: now.saturating_add(self.lifetime.as_millis() as i64),
        };
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires_ms > now);
        while map.len() >= limits::CONSOLE_MAX_SESSIONS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created_ms)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(key(&id), session.clone());
        (id, session)
    }

    /// The session of cookie value `id`, while it lasts. An expired one
    /// stays known as expired (every tab and refresh is told so) until the
    /// next sign-in drops it.
    pub fn get(&self, id: &str) -> Result<Session, Lookup> {
        match self.map.lock().get(&key(id)) {
            None => Err(Lookup::Unknown),
            Some(s) if s.expires_ms <= now_ms() => Err(Lookup::Expired),
            Some(s) => Ok(s.clone()),
        }
    }

    /// Ends the session of cookie value `id` (signing out).
    pub fn close(&self, id: &str) {
        self.map.lock().remove(&key(id));
    }

    /// Sessions held now (expired ones included until the next sign-in).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_expires_and_closes() {
        let s = Sessions::new(Duration::from_secs(3600));
        let login = Login::Token { hash: "h".into() };
        let (id, opened) = s.open(login.clone(), "arn:aws:iam::1:root".into());
        let got = s.get(&id).expect("open session");
        assert_eq!(got.login, login);
        assert_eq!(got.csrf, opened.csrf);
        assert_ne!(got.csrf, id, "the CSRF token is not the session ID");
        assert_eq!(s.get("other").unwrap_err(), Lookup::Unknown);
        s.close(&id);
        assert_eq!(s.get(&id).unwrap_err(), Lookup::Unknown);

        let short = Sessions::new(Duration::ZERO);
        let (id, _) = short.open(login, "arn".into());
        assert_eq!(short.get(&id).unwrap_err(), Lookup::Expired);
        assert_eq!(
            short.get(&id).unwrap_err(),
            Lookup::Expired,
            "still known as expired"
        );
        short.open(Login::Token { hash: "g".into() }, "arn".into());
        assert_eq!(
            short.get(&id).unwrap_err(),
            Lookup::Unknown,
            "dropped at the next sign-in"
        );
    }
}
