//! Any bytes as a policy file → a policy, or an error naming a line and column of the file
//! and saying what is wrong; never a panic. (Invalid UTF-8 never reaches the parser:
//! `Policy::load` refuses it at 1:1 as an unreadable file.)

use fluxfence::Policy;

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Policy::parse(text, "policy.yaml") {
        assert!(
            crate::is_position_in(text, error.line, error.column),
            "the error is not at a place in the file: {error}\n{text:?}"
        );
        assert!(
            !error.message.trim().is_empty(),
            "an error without a message"
        );
    }
}
