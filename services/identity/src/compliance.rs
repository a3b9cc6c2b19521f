//! Keystone's `[security_compliance]` settings of a running identity service: the
//! rules the domain decides with ([`domain::identity::Compliance`]) and the password
//! regex, which needs the plain password and so is checked here, before hashing.
//!
//! Invariants:
//! - The regex is matched like Python's `re.match` (Keystone): anchored at the start
//!   of the password, not at its end. It is compiled once, at start; a pattern the
//!   `regex` crate cannot compile (look-around, back-references) stops the start with
//!   the reason, rather than accepting every password.
//! - A password that does not match is refused with Keystone's 400 before anything
//!   is hashed or appended.

use domain::identity::Compliance;

use crate::IdentityError;

/// The security-compliance settings (all off by default, as Keystone's).
#[derive(Debug, Clone, Default)]
pub struct SecurityCompliance {
    /// What the domain decides with.
    pub rules: Compliance,
    regex: Option<regex::Regex>,
    description: Option<String>,
}

impl SecurityCompliance {
    /// Settings with `rules` and an optional password regex (Python syntax without
    /// look-around) and its human description.
    pub fn new(
        rules: Compliance,
        password_regex: Option<&str>,
        password_regex_description: Option<String>,
    ) -> Result<Self, IdentityError> {
        let regex = password_regex
            .filter(|p| !p.is_empty())
            .map(|p| {
                regex::Regex::new(&format!("^(?:{p})")).map_err(|e| {
                    IdentityError::Internal(format!(
                        "--password-regex {p:?} does not compile (look-around and back-references are not supported): {e}"
                    ))
                })
            })
            .transpose()?;
        Ok(SecurityCompliance {
            rules,
            regex,
            description: password_regex_description,
        })
    }

    /// Checks a new password against the regex (Keystone's 400 `The password does not
    /// match the requirements: <description>.`).
    pub fn check_password(&self, password: &str) -> Result<(), IdentityError> {
        match &self.regex {
            Some(r) if !r.is_match(password) => Err(IdentityError::BadRequest(format!(
                "The password does not match the requirements: {}.",
                self.description.as_deref().unwrap_or("None")
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regex_is_anchored_at_the_start_only_like_re_match() {
        let c = SecurityCompliance::new(
            Compliance::default(),
            Some("[a-z]+[0-9]"),
            Some("letters then a digit".into()),
        )
        .unwrap();
        assert!(c.check_password("abc1").is_ok());
        assert!(c.check_password("abc1 and more").is_ok());
        let err = c.check_password("1abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "The password does not match the requirements: letters then a digit."
        );
        assert!(SecurityCompliance::default().check_password("x").is_ok());
    }

    #[test]
    fn an_unsupported_pattern_is_refused_at_start() {
        let err = SecurityCompliance::new(Compliance::default(), Some("^(?=.*\\d).{7,}$"), None)
            .unwrap_err();
        assert!(err.to_string().contains("look-around"), "{err}");
    }
}
