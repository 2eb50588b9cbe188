//! AFL++ target `policy`: see `tether_fuzz::policy` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::policy(data));
}
