//! Any request to `/webhooks/{provider}`: authentication, parsing and the forensic
//! field extraction answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payhook_fuzz::{Request, SOURCES};

fuzz_target!(|request: Request| {
    let source = &SOURCES[usize::from(request.provider) % SOURCES.len()];
    let delivery = request.delivery();
    let _ = source.authenticate(&delivery);
    let _ = source.parse(&delivery);
    let _ = source.primary_fields(&request.body);
});
