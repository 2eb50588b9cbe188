//! AFL++ target `ssm_request`: see `tether_fuzz::ssm_request` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::ssm_request(data));
}
