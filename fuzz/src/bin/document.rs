//! AFL++ target `document`: see `tether_fuzz::document` and `corpus/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::document(data));
}
