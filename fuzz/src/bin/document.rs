//! AFL++ target `document`: see `tether_fuzz::document` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::document(data));
}
