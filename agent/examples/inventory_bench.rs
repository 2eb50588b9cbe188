//! Benchmark: gathers `AWS:Application` from a synthetic dpkg database of
//! N packages (default 3000) with an `info/<pkg>.list` file each, and prints
//! the time per gathering. `cargo run --release -p tether-agent --example inventory_bench [N]`

use std::time::Instant;

use tether_agent::inventory::{Identity, Selection, Sources, gather};

fn main() -> std::io::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir()?;
    let dpkg = dir.path().join("dpkg");
    std::fs::create_dir_all(dpkg.join("info"))?;
    let mut status = String::new();
    for i in 0..n {
        status.push_str(&format!(
            "Package: pkg{i}\nStatus: install ok installed\nPriority: optional\nSection: utils\n\
             Installed-Size: {i}\nMaintainer: Bench <bench@example.invalid>\nArchitecture: amd64\n\
             Version: 1:{i}.0.1-{i}ubuntu1\nDepends: libc6 (>= 2.34), zlib1g\n\
             Description: synthetic package {i}\n long description line one\n long description line two\n\
             Homepage: https://example.invalid/pkg{i}\n\n"
        ));
        std::fs::write(dpkg.join(format!("info/pkg{i}.list")), "/usr/bin/x\n")?;
    }
    std::fs::write(dpkg.join("status"), &status)?;
    let src = Sources {
        dpkg_dir: dpkg,
        rpm_dir: dir.path().join("none"),
        snap_dir: dir.path().join("none"),
        custom_dir: dir.path().join("none"),
        ..Sources::default()
    };
    let sel = Selection {
        applications: true,
        aws_components: false,
        network_config: false,
        instance_detailed_information: false,
        services: false,
        custom_inventory: false,
    };
    let me = Identity::default();
    let runs = 20;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let (items, _) = gather(&sel, &src, &me);
        times.push(t.elapsed());
        assert_eq!(items[0].content.len(), n);
    }
    times.sort();
    println!(
        "AWS:Application, {n} dpkg packages ({} KiB status file): median {:.1} ms, max {:.1} ms over {runs} runs (content hash included)",
        status.len() / 1024,
        times[runs / 2].as_secs_f64() * 1000.0,
        times[runs - 1].as_secs_f64() * 1000.0
    );
    Ok(())
}
