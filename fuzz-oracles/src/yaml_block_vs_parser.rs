//! The block reader (`linter/src/yaml/block.rs`) is a second reading of what `saphyr-parser`
//! answers: for every document it takes, its tree, spans included, must be the parser's; a
//! document it declines goes to the parser, which is then the only answer. Any difference, a
//! document the parser refuses but the reader took, or a panic in either, fails.

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // files are decoded before parsing; invalid UTF-8 never reaches YAML
    };
    // A byte-order mark is skipped before the readers see the text, as the loader does.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // The documents as the loader cuts them, and the text whole: a document marker inside
    // it must make the reader decline.
    for range in fluxfence::split::documents(text) {
        compare(&text[range]);
    }
    compare(text);
}

fn compare(document: &str) {
    if let Err(difference) = fluxfence::yaml::compare_block_reader_with_parser(document) {
        panic!("the block reader and the parser disagree: {difference}\n{document:?}");
    }
}
