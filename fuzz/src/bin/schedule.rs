//! AFL++ target `schedule`: see `tether_fuzz::schedule` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::schedule(data));
}
