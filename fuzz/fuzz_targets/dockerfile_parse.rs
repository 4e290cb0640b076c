//! The Dockerfile parser, typed layer, dump and error rendering on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = berth_builder::dockerfile::parse(&text) {
        let _ = r.ast.dump();
    }
    match berth_builder::instructions::parse_dockerfile(&text) {
        Ok(df) => {
            let g = berth_builder::instructions::stages::global_scope(&df, &Default::default(), &Default::default());
            if let Ok(g) = g
                && let Ok(deps) = berth_builder::instructions::stages::dependencies(&df, &Default::default(), &g)
            {
                let _ = berth_builder::instructions::stages::target_stages(&df, None, &deps);
            }
        }
        Err(e) => {
            let _ = e.render(&text, "Dockerfile");
        }
    }
});
