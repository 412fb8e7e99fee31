//! The payment providers payhook speaks to.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Stripe,
    Xendit,
    Qpay,
    Junglepay,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}")]
pub struct UnknownProvider(pub String);

impl Provider {
    pub const ALL: [Provider; 4] = [Self::Stripe, Self::Xendit, Self::Qpay, Self::Junglepay];

    /// Whether the provider runs subscriptions itself (Stripe Billing), so payhook
    /// follows its events; else payhook runs the schedule with one payment per period.
    pub fn runs_subscriptions(&self) -> bool {
        matches!(self, Self::Stripe)
    }

    /// The name used in URLs, configuration keys and the `provider` columns.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Xendit => "xendit",
            Self::Qpay => "qpay",
            Self::Junglepay => "junglepay",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert!("paypal".parse::<Provider>().is_err());
        assert!(
            "Stripe".parse::<Provider>().is_err(),
            "names are case-sensitive, like URL paths"
        );
    }
}
