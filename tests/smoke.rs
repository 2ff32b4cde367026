use pipelines::{pipeline, Runtime};

#[test]
fn smoke() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value + 1;
        ();
        Some(value * 2);
        None::<i32>;
        Ok::<_, String>(value + 1);
        println!("value is {value}");
    });
    let runtime = Runtime::builder(()).register("p", p).start().unwrap();
    let r = runtime
        .invoke("p", 1)
        .unwrap()
        .try_result()
        .unwrap()
        .unwrap();
    assert_eq!(r, 5);
}
