//! AFL++ target `shorthand`: see `tether_fuzz::shorthand` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::shorthand(data));
}
