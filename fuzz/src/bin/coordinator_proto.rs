//! AFL++ target `coordinator_proto`: see `tether_fuzz::coordinator_proto` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::coordinator_proto(data));
}
