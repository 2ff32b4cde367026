//! Re-raising in `rescue!` needs no type annotation: a bare `Err(..)` step, or one passed
//! on with `?`, takes the error path whatever the value's type.

use pipewright::{pipeline, Error};

fn main() {
    let _bare = pipeline!(|value: u32, _ctx: &()| {
        value = value.checked_sub(1).ok_or("below zero")?;
        rescue!(|error| {
            Err(error.clone());
        });
    });
    let _passed_on = pipeline!(|value: u32, _ctx: &()| {
        value = value.checked_sub(1).ok_or("below zero")?;
        rescue!(|error| {
            Err(Error::new(format!("could not count down: {error:#}")))?;
        });
    });
}
