//! The Extism guest of levelhost's comparison with Extism.

use extism_pdk::*;

#[host_fn]
extern "ExtismHost" {
    /// The host's function: answers the bytes it is given.
    fn echo(input: Vec<u8>) -> Vec<u8>;
}

/// Does nothing: the fixed cost of a run.
#[plugin_fn]
pub fn noop(_: ()) -> FnResult<()> {
    Ok(())
}

/// Calls the host `times` (the input, a decimal number) times with 200
/// bytes, each answered with 200 bytes; answers the bytes read.
#[plugin_fn]
pub fn calls(times: String) -> FnResult<String> {
    let times: u64 = times.trim().parse().unwrap_or(0);
    let message = vec![b'x'; 200];
    let mut read = 0usize;
    for _ in 0..times {
        let answer = unsafe { echo(message.clone())? };
        read += answer.len();
    }
    Ok(read.to_string())
}
