//! AFL++ target `sigv4`: see `tether_fuzz::sigv4` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::sigv4(data));
}
