//! Keeping a connection's credential out of what a plugin reads back: a
//! service that echoes requests (headers, bodies, base64 of them) must not
//! hand the plugin the secret the host added.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// What a scrubbed secret becomes.
pub const REDACTED: &str = "[redacted]";

/// The forms of a connection's secrets to look for: each raw, percent-encoded,
/// and base64-encoded (both alphabets) at each of the three alignments it
/// can have inside a longer encoded text.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    needles: Vec<Vec<u8>>,
    /// All the forms at once, longest first where two start together.
    finder: Option<AhoCorasick>,
}

impl Secrets {
    /// The forms of `secrets`.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut out = Self::default();
        for s in secrets {
            out.add(&s);
        }
        out
    }

    /// Adds the forms of one more secret.
    pub fn add(&mut self, secret: &str) {
        let raw = secret.as_bytes();
        if raw.is_empty() {
            return;
        }
        let mut forms = vec![raw.to_vec()];
        for upper in [true, false] {
            // RFC 3986's unreserved characters, and HTML forms' (which encode `~`).
            for keep in [&b"-._~"[..], &b"*-._"[..]] {
                let encoded = percent_encode(raw, upper, keep);
                if encoded.as_bytes() != raw {
                    forms.push(encoded.into_bytes());
                }
            }
        }
        for engine in [&STANDARD, &URL_SAFE] {
            for shift in 0..3 {
                forms.extend(base64_core(engine, raw, shift));
            }
        }
        for form in forms {
            // Shorter pieces than this could match ordinary text; the
            // connection refuses secrets short enough to make them.
            if form.len() >= 6 && !self.needles.contains(&form) {
                self.needles.push(form);
            }
        }
        // Where forms overlap, the one starting first wins, then the longest,
        // so a longer form is replaced whole rather than a piece of it. The
        // automaton fails to build only past sizes no credential reaches;
        // then `scrub` withholds every answer whole (see there).
        self.finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&self.needles)
            .ok();
    }

    /// `bytes` with every form of every secret replaced by [`REDACTED`].
    pub fn scrub(&self, bytes: &[u8]) -> (Vec<u8>, bool) {
        match &self.finder {
            Some(finder) if finder.is_match(bytes) => {
                let with = vec![REDACTED.as_bytes(); self.needles.len()];
                (finder.replace_all_bytes(bytes, &with), true)
            }
            Some(_) => (bytes.to_vec(), false),
            // Nothing to look for.
            None if self.needles.is_empty() => (bytes.to_vec(), false),
            // No automaton for the forms: fail closed.
            None => (REDACTED.as_bytes().to_vec(), true),
        }
    }

    /// A text with every secret replaced.
    pub fn scrub_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.scrub(text.as_bytes()).0).into_owned()
    }
}

/// The part of base64(`shift` bytes + `raw`) that depends on `raw` alone:
/// the characters mixing in the bytes before or after are dropped, so it
/// is found inside any longer text encoded at that alignment.
fn base64_core(
    engine: &base64::engine::GeneralPurpose,
    raw: &[u8],
    shift: usize,
) -> Option<Vec<u8>> {
    let mut input = vec![0u8; shift];
    input.extend_from_slice(raw);
    let encoded = engine.encode(&input);
    let encoded = encoded.trim_end_matches('=');
    let start = match shift {
        0 => 0,
        1 => 2,
        _ => 3,
    };
    let end = match input.len() % 3 {
        0 => encoded.len(),
        _ => encoded.len().saturating_sub(1),
    };
    (end > start).then(|| encoded.as_bytes()[start..end].to_vec())
}

fn percent_encode(raw: &[u8], upper: bool, keep: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD_NO_PAD;

    #[test]
    fn every_form_of_a_secret_is_scrubbed() {
        let secret = "tok+en/with=odd&chars-123";
        let secrets = Secrets::new([secret.to_owned()]);
        let clean = |text: String| {
            let out = secrets.scrub_text(&text);
            assert!(!out.contains(secret), "{out}");
            out
        };
        clean(format!("Bearer {secret}"));
        for keep in [&b"-._~"[..], &b"*-._"[..]] {
            let encoded = percent_encode(secret.as_bytes(), true, keep);
            assert!(clean(format!("x={encoded}")).contains(REDACTED));
        }
        for prefix in ["", "a", "ab", "Authorization: Bearer "] {
            for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD] {
                let encoded = engine.encode(format!("{prefix}{secret} and more"));
                let out = secrets.scrub_text(&encoded);
                assert!(out.contains(REDACTED), "{prefix:?}: {encoded} -> {out}");
                // What is left cannot be decoded back into the secret.
                let decoded = String::from_utf8_lossy(
                    &engine.decode(out.replace(REDACTED, "")).unwrap_or_default(),
                )
                .into_owned();
                assert!(!decoded.contains(secret));
            }
        }
        assert_eq!(secrets.scrub_text("nothing here"), "nothing here");
    }
}
