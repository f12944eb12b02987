//! Registrar policy: expiry bounds and the per-AOR contact limit.

/// How long bindings may live and how many an AOR may hold.
///
/// Defaults: `min_expires` 60 s (RFC 3261 §10.2.8 recommends at least 60 s as the usual
/// minimum), `max_expires` 3600 s, `default_expires` 3600 s (§10.2.1.1 suggests 3600 s when the
/// UA gives none), `max_contacts` 16. Call [`RegistrarPolicy::validate`] after building one from
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// Smallest non-zero expiry accepted; below it the REGISTER gets 423 with `Min-Expires`.
    pub min_expires: u32,
    /// Largest expiry granted; larger requests are lowered to this (§10.3 step 7).
    pub max_expires: u32,
    /// Expiry used when neither the contact `expires` parameter nor `Expires` is present.
    pub default_expires: u32,
    /// Maximum bindings per AOR after the request is applied.
    pub max_contacts: usize,
    /// q-value (per mille) stored for a contact that gives none. RFC 3261 leaves it open; we
    /// treat an unqualified contact as the most preferred (1000 = `q=1`).
    pub default_q: u16,
}

/// An inconsistent [`RegistrarPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `min_expires` is zero or larger than `max_expires`.
    #[error("min_expires ({min}) must be between 1 and max_expires ({max})")]
    MinAboveMax {
        /// Configured minimum.
        min: u32,
        /// Configured maximum.
        max: u32,
    },
    /// `default_expires` lies outside `min_expires..=max_expires`.
    #[error("default_expires ({default}) must lie between min_expires and max_expires")]
    DefaultOutOfRange {
        /// Configured default.
        default: u32,
    },
    /// `max_contacts` is zero.
    #[error("max_contacts must be at least 1")]
    NoContactsAllowed,
    /// `default_q` is above 1000.
    #[error("default_q ({0}) must be at most 1000")]
    DefaultQOutOfRange(u16),
}

impl Default for RegistrarPolicy {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 16,
            default_q: 1000,
        }
    }
}

impl RegistrarPolicy {
    /// Checks that the bounds are consistent.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_expires == 0 || self.min_expires > self.max_expires {
            return Err(PolicyError::MinAboveMax {
                min: self.min_expires,
                max: self.max_expires,
            });
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return Err(PolicyError::DefaultOutOfRange {
                default: self.default_expires,
            });
        }
        if self.max_contacts == 0 {
            return Err(PolicyError::NoContactsAllowed);
        }
        if self.default_q > 1000 {
            return Err(PolicyError::DefaultQOutOfRange(self.default_q));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_ones_are_not() {
        assert_eq!(RegistrarPolicy::default().validate(), Ok(()));
        let p = RegistrarPolicy {
            min_expires: 0,
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(PolicyError::MinAboveMax { .. })));
        let p = RegistrarPolicy {
            default_expires: 30,
            ..Default::default()
        };
        assert_eq!(
            p.validate(),
            Err(PolicyError::DefaultOutOfRange { default: 30 })
        );
        let p = RegistrarPolicy {
            max_contacts: 0,
            ..Default::default()
        };
        assert_eq!(p.validate(), Err(PolicyError::NoContactsAllowed));
    }
}
