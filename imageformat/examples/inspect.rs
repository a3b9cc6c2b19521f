//! Prints what the inspector finds in each file given: format, virtual size, safety,
//! and Glance's and Nova's verdicts for a `disk_format` (default: the detected one).
//!
//! `cargo run -p imageformat --example inspect -- [--disk-format F] FILE...`

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut claimed = None;
    if args.first().map(String::as_str) == Some("--disk-format") && args.len() > 1 {
        claimed = Some(args.remove(1));
        args.remove(0);
    }
    for path in args {
        let r = imageformat::inspect_file(std::path::Path::new(&path));
        let disk_format = claimed.clone().unwrap_or_else(|| match &r {
            Ok(i) => i.format.name().to_string(),
            Err(_) => "raw".into(),
        });
        let found = match &r {
            Ok(i) => format!(
                "{} virtual_size={} violations={:?}",
                i.format,
                i.virtual_size,
                i.violations.iter().map(|v| &v.reason).collect::<Vec<_>>()
            ),
            Err(e) => e.to_string(),
        };
        println!(
            "{path}: {found}; as {disk_format}: glance {:?}, nova {:?}",
            imageformat::glance_upload(&disk_format, &r, true),
            imageformat::nova_boot(&disk_format, &r)
        );
    }
}
