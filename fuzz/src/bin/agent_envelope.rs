//! AFL++ target `agent_envelope`: see `tether_fuzz::agent_envelope` and `fuzz/README.md`.

fn main() {
    tether_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| tether_fuzz::agent_envelope(data));
}
