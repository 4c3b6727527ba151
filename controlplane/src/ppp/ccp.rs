//! CCP (RFC 1962) as a null negotiator: the data plane compresses nothing,
//! so when CCP is enabled we request no algorithm and reject every one the
//! peer proposes. CCP then opens with no compression, which some clients
//! prefer over the Protocol-Reject sent when CCP is disabled.

use super::fsm::{OptionPolicy, Verdict};
use super::lcp::{RawOption, Repr};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// CCP packets (RFC 1962 §2: codes 1–7, plus 14/15 Reset-Request/Ack which
/// parse as `Unknown` and are Code-Rejected).
pub type CcpRepr = Repr<RawOption>;

/// The null CCP policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CcpPolicy;

impl OptionPolicy for CcpPolicy {
    type Option = RawOption;

    fn reset(&mut self, _: &mut ChaCha8Rng) {}

    fn request(&mut self) -> Vec<RawOption> {
        Vec::new()
    }

    fn judge(&mut self, request: &[RawOption], _: &mut ChaCha8Rng) -> Verdict<RawOption> {
        if request.is_empty() {
            Verdict::Ack
        } else {
            Verdict::Reject(request.to_vec())
        }
    }

    fn peer_acknowledged(&mut self, _: &[RawOption]) {}
    fn acknowledged(&mut self, _: &[RawOption]) {}
    fn naked(&mut self, _: &[RawOption], _: &mut ChaCha8Rng) {}
    fn rejected(&mut self, _: &[RawOption]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::test_rng as rng;

    #[test]
    fn rejects_every_algorithm() {
        let mut p = CcpPolicy;
        let mppe = RawOption { kind: 18, data: vec![0, 0, 0, 0x40] };
        assert_eq!(p.judge(std::slice::from_ref(&mppe), &mut rng()), Verdict::Reject(vec![mppe]));
        assert_eq!(p.judge(&[], &mut rng()), Verdict::Ack);
        assert!(p.request().is_empty());
    }
}
