//! Output masking: every occurrence of a secret value a step was given is
//! replaced with `****` before its output is stored, streamed or reported —
//! also when the step echoes it, and when it straddles two chunks of the
//! stream ([`MaskStream`] holds back a tail that could still become one).
//!
//! Every value is masked, whatever its length: a very short secret (`a`)
//! masks every occurrence of that text in ordinary output too. That is the
//! price of never showing it; the README says so.

/// What a masked secret becomes.
pub const MASK: &[u8] = b"****";

/// The secret values of one step, longest first (so that of two values
/// where one contains the other, the longer is masked whole).
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: Vec<Vec<u8>>,
}

impl Secrets {
    /// The values to mask; empty ones are dropped (there is nothing to hide).
    pub fn new<I, V>(values: I) -> Secrets
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut values: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| v.as_ref().to_vec())
            .filter(|v| !v.is_empty())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Secrets { values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The longest value's length.
    fn longest(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// The length of the value found at the start of `at`, if any.
    fn found_at(&self, at: &[u8]) -> Option<usize> {
        self.values.iter().find(|v| at.starts_with(v)).map(Vec::len)
    }

    /// Whether `tail` (shorter than some value) is the start of a value:
    /// the next bytes might complete it.
    fn may_start(&self, tail: &[u8]) -> bool {
        self.values
            .iter()
            .any(|v| v.len() > tail.len() && v.starts_with(tail))
    }

    /// `data` with every value masked (a whole buffer: nothing held back).
    pub fn mask(&self, data: &[u8]) -> Vec<u8> {
        let mut stream = MaskStream::new(self.clone());
        let mut out = stream.push(data);
        out.extend(stream.finish());
        out
    }
}

/// Masks a stream that arrives in chunks: what [`MaskStream::push`] answers
/// is final; a tail that could be the start of a value waits for the next
/// chunk or for [`MaskStream::finish`].
#[derive(Debug)]
pub struct MaskStream {
    secrets: Secrets,
    pending: Vec<u8>,
}

impl MaskStream {
    pub fn new(secrets: Secrets) -> MaskStream {
        MaskStream {
            secrets,
            pending: Vec::new(),
        }
    }

    /// The masked bytes that are now certain.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        self.drain(false)
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        self.drain(true)
    }

    fn drain(&mut self, end: bool) -> Vec<u8> {
        let data = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            // Near the end, a value may be only partly here yet (also one
            // that a shorter value found here is the start of).
            if !end && rest.len() < self.secrets.longest() && self.secrets.may_start(rest) {
                self.pending = rest.to_vec();
                break;
            }
            if let Some(n) = self.secrets.found_at(rest) {
                out.extend_from_slice(MASK);
                i += n;
                continue;
            }
            out.push(data[i]);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_masked_longest_first() {
        let s = Secrets::new(["Pa55w0rd", "Pa55", ""]);
        assert_eq!(
            s.mask(b"pw=Pa55w0rd, again Pa55w0rd; prefix Pa55 only"),
            b"pw=****, again ****; prefix **** only".to_vec()
        );
        assert_eq!(s.mask(b"nothing here"), b"nothing here".to_vec());
        // A one-letter secret masks that letter everywhere (documented).
        assert_eq!(
            Secrets::new(["a"]).mask(b"banana"),
            b"b****n****n****".to_vec()
        );
        assert!(Secrets::new([""]).is_empty());
    }

    #[test]
    fn a_value_split_across_chunks_is_masked_at_every_split() {
        let secret = "s3cr3t-V@lue";
        let text = format!("start {secret} middle {secret}{secret} end s3cr");
        let want = b"start **** middle ******** end s3cr".to_vec();
        let bytes = text.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut m = MaskStream::new(Secrets::new([secret]));
                let mut out = m.push(&bytes[..a]);
                out.extend(m.push(&bytes[a..b]));
                out.extend(m.push(&bytes[b..]));
                out.extend(m.finish());
                assert_eq!(out, want, "split at {a} and {b}");
            }
        }
        // Byte by byte.
        let mut m = MaskStream::new(Secrets::new([secret]));
        let mut out = Vec::new();
        for b in bytes {
            out.extend(m.push(std::slice::from_ref(b)));
        }
        out.extend(m.finish());
        assert_eq!(out, want);
    }

    #[test]
    fn nested_values_are_masked_whole_at_every_split() {
        let secrets = Secrets::new(["Pa55w0rd", "Pa55"]);
        let bytes = b"a Pa55w0rd b Pa55 c Pa55w0";
        let want = secrets.mask(bytes);
        assert_eq!(want, b"a **** b **** c ****w0".to_vec());
        for a in 0..=bytes.len() {
            let mut m = MaskStream::new(secrets.clone());
            let mut out = m.push(&bytes[..a]);
            out.extend(m.push(&bytes[a..]));
            out.extend(m.finish());
            assert_eq!(out, want, "split at {a}");
        }
    }

    #[test]
    fn only_a_possible_start_is_held_back() {
        let mut m = MaskStream::new(Secrets::new(["secret"]));
        assert_eq!(m.push(b"line one\nsec"), b"line one\n".to_vec());
        assert_eq!(m.push(b"ond line\n"), b"second line\n".to_vec());
        assert_eq!(m.push(b"xyz"), b"xyz".to_vec());
        assert_eq!(m.finish(), Vec::<u8>::new());
        let mut none = MaskStream::new(Secrets::default());
        assert_eq!(none.push(b"sec"), b"sec".to_vec());
    }
}
