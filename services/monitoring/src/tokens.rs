//! Admin tokens (issue 14): several, each named and scoped.
//!
//! Monitoring refuses to start with a missing, empty or short (< 32 bytes) token. A
//! request's token is compared with every configured token without an early exit, so the
//! answer's timing does not tell how much of a guess was right, nor which token it was
//! close to. The audit log records the matching token's name.

use crate::config::{Config, Scope};

/// Shorter is refused at start: 32 bytes is 256 bits from a generator, or a long phrase.
pub const TOKEN_MIN_BYTES: usize = 32;

pub struct Token {
    pub name: String,
    pub scope: Scope,
    secret: Vec<u8>,
}

pub struct Tokens(Vec<Token>);

fn equal(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Tokens {
    pub fn load(config: &Config) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let legacy = config
            .token_file
            .iter()
            .map(|file| ("admin".to_owned(), Scope::Write, file.clone()));
        let named = config
            .admin_tokens
            .iter()
            .map(|t| (t.name.clone(), t.scope, t.file.clone()));
        for (name, scope, file) in legacy.chain(named) {
            let secret = payrail_core::config::read_secret(&file).map_err(|e| e.to_string())?;
            let secret = secret.trim().as_bytes().to_vec();
            if secret.len() < TOKEN_MIN_BYTES {
                return Err(format!(
                    "admin token {name:?} in {} holds {} bytes; at least {TOKEN_MIN_BYTES} are required (e.g. `head -c 32 /dev/urandom | xxd -p -c 64`)",
                    file.display(),
                    secret.len()
                ));
            }
            tokens.push(Token {
                name,
                scope,
                secret,
            });
        }
        if tokens.is_empty() {
            return Err("no admin token is configured".into());
        }
        Ok(Self(tokens))
    }

    /// The token a request's `Authorization` header carries, if it is one of ours.
    pub fn find(&self, header: Option<&[u8]>) -> Option<&Token> {
        let given = header.and_then(|v| v.strip_prefix(b"Bearer "))?;
        let mut found = None;
        for token in &self.0 {
            if equal(given, &token.secret) {
                found = Some(token);
            }
        }
        found
    }
}
