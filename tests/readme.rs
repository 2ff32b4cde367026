//! Every Rust block of README.md compiles and runs. Each block is copied, verbatim,
//! between a `// README begin` and a `// README end` line below, inside a function with
//! the definitions it needs around it (an `Api` with async methods, a context, ...). A
//! region opened with `// README continued` instead continues the previous block (for a
//! block whose parts live at different places: an `impl` and the code using it).
//! `the_readme_blocks_are_the_ones_compiled_here` checks that the copies are exactly the
//! README's blocks, all of them, so an edit to either side that is not made to the other
//! fails the suite. (The README stays free of hidden setup lines, which GitHub would show.)

use std::error::Error as StdError;

type Outcome = Result<(), Box<dyn StdError + Send + Sync>>;

/// The text of every fenced Rust block in `markdown`.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```rust") => current = Some(Vec::new()),
            Some(lines) if line.trim_start().starts_with("```") => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    blocks
}

/// The regions of this file between the begin and end markers, without the indentation
/// they share.
fn compiled_copies(source: &str) -> Vec<String> {
    let begin = ["// README", " begin"].concat();
    let continued = ["// README", " continued"].concat();
    let end = ["// README", " end"].concat();
    let mut copies: Vec<String> = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let mut continues = false;
    for line in source.lines() {
        let marker = line.trim();
        if marker == begin || marker == continued {
            current = Some(Vec::new());
            continues = marker == continued;
        } else if marker == end {
            let lines = current
                .take()
                .expect("an end marker without a begin marker");
            let indent = lines
                .iter()
                .filter(|line| !line.trim().is_empty())
                .map(|line| line.len() - line.trim_start().len())
                .min()
                .unwrap_or(0);
            let lines: Vec<&str> = lines
                .iter()
                .map(|line| line.get(indent..).unwrap_or("").trim_end())
                .collect();
            let text = lines.join("\n");
            match copies.last_mut() {
                Some(last) if continues => {
                    last.push('\n');
                    last.push_str(&text);
                }
                _ => copies.push(text),
            }
        } else if let Some(lines) = &mut current {
            lines.push(line);
        }
    }
    copies
}

#[test]
fn the_readme_blocks_are_the_ones_compiled_here() {
    let readme = include_str!("../README.md");
    let blocks = rust_blocks(readme);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut design = vec![
        root.join("ARCHITECTURE.md"),
        root.join("docs/bench-notes.md"),
    ];
    for entry in std::fs::read_dir(root.join("docs/decisions")).unwrap() {
        design.push(entry.unwrap().path());
    }
    for path in design {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            rust_blocks(&text).is_empty(),
            "{} has Rust blocks: compile them here too",
            path.display()
        );
    }
    let copies = compiled_copies(include_str!("readme.rs"));
    for (number, block) in blocks.iter().enumerate() {
        let block: Vec<&str> = block.lines().map(str::trim_end).collect();
        let block = block.join("\n");
        assert!(
            copies.contains(&block),
            "README.md's Rust block number {} is not compiled by tests/readme.rs \
             (copy it there, verbatim):\n{block}",
            number + 1
        );
    }
    for copy in &copies {
        assert!(
            blocks.iter().any(|block| {
                let block: Vec<&str> = block.lines().map(str::trim_end).collect();
                block.join("\n") == *copy
            }),
            "tests/readme.rs compiles a block that README.md does not have:\n{copy}"
        );
    }
    assert_eq!(
        copies.len(),
        blocks.len(),
        "each README block is copied once"
    );
}

/// The code blocks of a file's crate documentation (its `//!` lines).
fn crate_doc_blocks(source: &str) -> Vec<String> {
    let docs: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in docs {
        match &mut current {
            None if line.starts_with("```") => current = Some(Vec::new()),
            Some(lines) if line.starts_with("```") => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    blocks
}

#[test]
fn the_member_crates_readmes_show_compiled_examples() {
    // Each Rust block of a member crate's README is a README.md block (compiled above)
    // or a doctest of pipewright-core's crate documentation.
    let mut compiled = rust_blocks(include_str!("../README.md"));
    compiled.extend(crate_doc_blocks(include_str!(
        "../pipewright-core/src/lib.rs"
    )));
    for (crate_name, readme) in [
        (
            "pipewright-core",
            include_str!("../pipewright-core/README.md"),
        ),
        (
            "pipewright-macros",
            include_str!("../pipewright-macros/README.md"),
        ),
    ] {
        let blocks = rust_blocks(readme);
        assert!(!blocks.is_empty(), "{crate_name}'s README has an example");
        for block in blocks {
            assert!(
                compiled.contains(&block),
                "{crate_name}'s README shows an example that is not compiled: copy one of \
                 README.md's blocks or pipewright-core's crate docs, verbatim:\n{block}"
            );
        }
    }
}

/// An API client whose methods borrow `self` and their arguments, as in the README.
mod api {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub(crate) struct Form(pub(crate) String);
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub(crate) struct View(pub(crate) u32);

    /// What `Api::load` takes: an id, or a borrowed view.
    pub(crate) trait Key {
        type Loaded;
        fn loaded(self) -> Self::Loaded;
    }
    impl Key for u64 {
        type Loaded = u64;
        fn loaded(self) -> u64 {
            self
        }
    }
    impl Key for &View {
        type Loaded = View;
        fn loaded(self) -> View {
            self.clone()
        }
    }

    #[derive(Default)]
    pub(crate) struct Api {
        pub(crate) calls: AtomicU32,
    }

    impl Api {
        async fn call(&self) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pub(crate) async fn search(&self, query: &str) -> String {
            self.call().await;
            format!("results for {query}")
        }
        pub(crate) async fn submit(&self, _form: &Form) {
            self.call().await;
        }
        pub(crate) async fn load<K: Key>(&self, key: K) -> K::Loaded {
            self.call().await;
            key.loaded()
        }
        /// Busy the first two times; id 0 is never found.
        pub(crate) async fn fetch(&self, id: u64) -> Result<u64, FetchError> {
            self.call().await;
            if id == 0 {
                Err(FetchError::NotFound)
            } else if self.calls.load(Ordering::SeqCst) <= 2 {
                Err(FetchError::Busy)
            } else {
                Ok(id * 10)
            }
        }
    }

    /// What `Api::fetch` fails with.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum FetchError {
        Busy,
        NotFound,
    }

    impl FetchError {
        /// Worth another try.
        pub(crate) fn is_transient(&self) -> bool {
            matches!(self, FetchError::Busy)
        }
    }

    impl std::fmt::Display for FetchError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                FetchError::Busy => "busy",
                FetchError::NotFound => "not found",
            })
        }
    }

    impl std::error::Error for FetchError {}
}

#[rustfmt::skip]
mod quick_start {
    // README begin
    use pipewright::{pipeline, Runtime};

    async fn async_inc(value: i32) -> i32 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        value + 1
    }

    #[tokio::main]
    async fn main() {
        let inc_3 = pipeline!(|value: i32, _ctx: &()| {
            value = value + 1;                // the value changes where a step assigns it
            value = async_inc(value).await;   // a step ending in `.await` may wait
            value = value + 1;
        });
        let runtime = Runtime::builder(()).register("inc-3", inc_3).start().unwrap();
        assert_eq!(runtime.invoke("inc-3", 0).unwrap().await.unwrap(), 3);
    }
    // README end

    #[test]
    fn runs() {
        main();
    }
}

#[rustfmt::skip]
mod steps_and_values {
    use pipewright::{pipeline, Runtime};

    struct Db;

    impl Db {
        fn name_of(&self, id: u64) -> Option<String> {
            (id == 7).then(|| "seven".to_owned())
        }
    }

    #[test]
    fn a_request_whose_result_is_another_type() {
        // README begin
        #[derive(Clone)]
        struct Lookup {
            id: u64,
            found: Option<String>,
        }

        let lookup = pipeline!(|lookup: Lookup, db: &Db| {
            lookup = Lookup { found: db.name_of(lookup.id), ..lookup };
        });
        // README end
        let runtime = Runtime::builder(Db).start().unwrap();
        let mut handle = runtime.invoke_pipeline(&lookup, Lookup { id: 7, found: None }).unwrap();
        let found = handle.try_result().unwrap().unwrap();
        assert_eq!((found.id, found.found.as_deref()), (7, Some("seven")));
    }
}

#[rustfmt::skip]
mod rescue_and_finally {
    use std::sync::Mutex;

    use pipewright::{pipeline, Runtime};

    #[derive(Clone, Debug, PartialEq)]
    struct Draft(String);

    fn validate(draft: Draft) -> Result<(), String> {
        if draft.0.is_empty() { Err("empty draft".into()) } else { Ok(()) }
    }

    #[derive(Default)]
    struct Store(Mutex<Vec<String>>);
    impl Store {
        async fn save(&self, draft: Draft) {
            self.0.lock().unwrap().push(draft.0);
        }
    }
    #[derive(Default)]
    struct Spinner(Mutex<bool>);
    impl Spinner {
        fn stop(&self) {
            *self.0.lock().unwrap() = false;
        }
    }
    #[derive(Default)]
    struct Ctx {
        api: Store,
        spinner: Spinner,
        toasts: Mutex<Vec<String>>,
    }
    impl Ctx {
        fn toast(&self, message: String) {
            self.toasts.lock().unwrap().push(message);
        }
    }

    #[tokio::test]
    async fn runs() {
        // README begin
        let save = pipeline!(|value: Draft, ctx: &Ctx| {
            validate(value)?;
            ctx.api.save(value).await;
            rescue!(|error| {                 // the value from before the failing step
                ctx.toast(format!("not saved: {error:#}"));
            });
            finally!(|error| {                // Option<&Error>; runs whatever happened
                ctx.spinner.stop();
            });
        });
        // README end
        let runtime = Runtime::builder(Ctx::default()).start().unwrap();
        *runtime.context().spinner.0.lock().unwrap() = true;
        let saved = runtime.invoke_pipeline(&save, Draft("hello".into())).unwrap().await;
        assert_eq!(saved.unwrap(), Draft("hello".into()));
        let empty = runtime.invoke_pipeline(&save, Draft(String::new())).unwrap().await;
        assert_eq!(empty.unwrap(), Draft(String::new()), "rescue! handled the error");
        let ctx = runtime.context();
        assert_eq!(*ctx.api.0.lock().unwrap(), ["hello"]);
        assert_eq!(*ctx.toasts.lock().unwrap(), ["not saved: step failed: empty draft"]);
        assert!(!*ctx.spinner.0.lock().unwrap());
    }
}

#[rustfmt::skip]
mod continuations {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use pipewright::{pipeline, Runtime};

    #[derive(Debug, Clone)]
    struct Lookup {
        key: String,
        data: Option<String>,
        stale: bool,
    }

    impl Lookup {
        fn of(key: &str) -> Self {
            Lookup { key: key.to_owned(), data: None, stale: false }
        }
    }

    #[derive(Default)]
    struct App {
        cache: Mutex<HashMap<String, String>>,
        shown: Mutex<Vec<String>>,
    }

    impl App {
        fn cached(&self, key: &str) -> Option<String> {
            self.cache.lock().unwrap().get(key).cloned()
        }
        async fn fetch_if_missing(&self, mut lookup: Lookup) -> Lookup {
            if lookup.data.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                lookup.data = Some(format!("fresh {}", lookup.key));
            }
            lookup
        }
        fn remember_and_show(&self, lookup: &Lookup) {
            if let (Some(data), false) = (&lookup.data, lookup.stale) {
                self.cache.lock().unwrap().insert(lookup.key.clone(), data.clone());
            }
            self.shown.lock().unwrap().push(format!("{:?} stale={}", lookup.data, lookup.stale));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stale_while_revalidate() {
        // README begin
        let lookup = pipeline!(|lookup: Lookup, app: &App, current| {
            lookup = {
                match app.cached(&lookup.key) {
                    Some(cached) => {
                        // Refetch in the background: the rest of this pipeline, run again
                        // without the cached answer, as a detached fork.
                        let refetch = current.continuation().with_value(Lookup::of(&lookup.key));
                        current.fork_detached(refetch)?;
                        Lookup { data: Some(cached), stale: true, ..lookup }
                    }
                    None => lookup,
                }
            };
            lookup = app.fetch_if_missing(lookup).await;   // ready at once when the cache answered
            app.remember_and_show(&lookup);
        });
        // README end
        let runtime = Runtime::builder(App::default()).start().unwrap();
        let first = runtime.invoke_pipeline(&lookup, Lookup::of("a")).unwrap().await.unwrap();
        assert!(!first.stale);
        let mut second = runtime.invoke_pipeline(&lookup, Lookup::of("a")).unwrap();
        assert!(second.try_result().unwrap().unwrap().stale, "answered from the cache");
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
        let shown = runtime.context().shown.lock().unwrap().clone();
        let fresh = r#"Some("fresh a") stale=false"#;
        assert_eq!(shown, [fresh, r#"Some("fresh a") stale=true"#, fresh]);
        assert_eq!(runtime.live_counts().0, 0);
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Order {
        total: u32,
        reviewed: bool,
        charged: bool,
    }

    #[derive(Default)]
    struct Shop;

    impl Shop {
        fn price(&self, order: Order) -> Order {
            Order { total: order.total * 2, ..order }
        }
        async fn charge(&self, order: Order) -> Order {
            tokio::task::yield_now().await;
            Order { charged: true, ..order }
        }
    }

    #[tokio::test]
    async fn insert_a_step() {
        let review = pipeline!(|order: Order, _shop: &Shop| {
            order = Order { reviewed: true, ..order };
        });
        // README begin
        let checkout = pipeline!(|order: Order, shop: &Shop, current| {
            order = shop.price(order);
            {
                let mut rest = current.continuation();   // the steps after this one, then the parents'
                if order.total > 1_000 {
                    rest.innermost_mut().insert(review.clone());   // a nested pipeline, run first
                }
                rest                                     // returned: the run goes on with it
            };
            order = shop.charge(order).await;
        });
        // README end
        let runtime = Runtime::builder(Shop).start().unwrap();
        let small = Order { total: 100, reviewed: false, charged: false };
        let big = Order { total: 600, ..small.clone() };
        let small = runtime.invoke_pipeline(&checkout, small).unwrap().await.unwrap();
        let big = runtime.invoke_pipeline(&checkout, big).unwrap().await.unwrap();
        assert_eq!((small.total, small.reviewed, small.charged), (200, false, true));
        assert_eq!((big.total, big.reviewed, big.charged), (1200, true, true));
    }
}

#[rustfmt::skip]
mod the_runtime {
    use std::sync::atomic::{AtomicU32, Ordering};

    use pipewright::{pipeline, Runtime};

    static TRANSACTIONS: AtomicU32 = AtomicU32::new(0);
    fn begin() {}
    fn commit() {
        TRANSACTIONS.fetch_add(1, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn runs() -> super::Outcome {
        let context = ();
        let inc_3 = pipeline!(|value: i32, _ctx: &()| { value = value + 1; value = value + 1; value = value + 1; });
        // README begin
        let runtime = Runtime::builder(context)
            .register("inc-3", inc_3)
            .error_reporter(|ident, error| eprintln!("{ident} failed: {error:#}"))
            .transactor(|stretch| { begin(); stretch(); commit(); })
            .start()?;
        let mut handle = runtime.invoke("inc-3", 0)?;   // or runtime.invoke_pipeline(&p, 0)
        if let Some(result) = handle.try_result() { println!("did not wait: {result:?}"); }
        let result = handle.await;                      // Result<V, pipewright::Error>
        runtime.stop();                                 // cancels what waits, refuses new work
        // README end
        assert!(matches!(result, Err(pipewright::Error::ResultTaken)), "try_result took it");
        assert_eq!(TRANSACTIONS.load(Ordering::SeqCst), 1);
        assert!(runtime.invoke("inc-3", 0).is_err(), "a stopped runtime refuses work");
        Ok(())
    }
}

#[rustfmt::skip]
mod behaviours {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    use std::time::Duration;

    use pipewright::{pipeline, Runtime};

    use super::api::{Api, Form, View};

    #[tokio::test(start_paused = true)]
    async fn restartable() {
        // README begin
        let search = pipeline!(|query: String, api: &Api| {
            query = api.search(&query).await;
        }).restartable();
        // README end
        let runtime = Runtime::builder(Api::default()).start().unwrap();
        let stale = runtime.invoke_pipeline(&search, "ru".into()).unwrap();
        let fresh = runtime.invoke_pipeline(&search, "rust".into()).unwrap();
        assert!(stale.await.unwrap_err().is_cancelled());
        assert_eq!(fresh.await.unwrap(), "results for rust");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping() {
        // README begin
        let submit = pipeline!(|form: Form, api: &Api| { api.submit(&form).await; }).dropping();
        // README end
        let runtime = Runtime::builder(Api::default()).start().unwrap();
        let first = runtime.invoke_pipeline(&submit, Form("a".into())).unwrap();
        let again = runtime.invoke_pipeline(&submit, Form("a".into())).unwrap();
        assert!(again.await.unwrap_err().is_dropped());
        assert_eq!(first.await.unwrap(), Form("a".into()));
        assert_eq!(runtime.context().calls.load(Ordering::SeqCst), 1);
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Doc(u32);
    #[derive(Default)]
    struct Db(Mutex<Vec<u32>>);
    impl Db {
        async fn save(&self, doc: &Doc) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.0.lock().unwrap().push(doc.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn enqueued() {
        // README begin
        let save = pipeline!(|doc: Doc, db: &Db| { db.save(&doc).await; }).enqueued();
        // README end
        let runtime = Runtime::builder(Db::default()).start().unwrap();
        let handles: Vec<_> = (1..=3).map(|n| runtime.invoke_pipeline(&save, Doc(n)).unwrap()).collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(*runtime.context().0.lock().unwrap(), [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_latest() {
        // README begin
        let refresh = pipeline!(|view: View, api: &Api| { view = api.load(&view).await; }).keep_latest();
        // README end
        let runtime = Runtime::builder(Api::default()).start().unwrap();
        let outcomes: Vec<_> = (1..=3).map(|n| runtime.invoke_pipeline(&refresh, View(n)).unwrap()).collect();
        let mut results = HashMap::new();
        for (n, handle) in (1..=3).zip(outcomes) {
            results.insert(n, handle.await.map_err(|error| error.is_cancelled()));
        }
        assert_eq!(results[&1], Ok(View(1)));
        assert_eq!(results[&2], Err(true), "replaced by the latest while it waited");
        assert_eq!(results[&3], Ok(View(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn use_existing() {
        // README begin
        let load = pipeline!(|id: u64, api: &Api| { id = api.load(id).await; }).use_existing();
        // README end
        let runtime = Runtime::builder(Api::default()).start().unwrap();
        let first = runtime.invoke_pipeline(&load, 7).unwrap();
        let shared = runtime.invoke_pipeline(&load, 7).unwrap();
        assert_eq!(first.await.unwrap(), 7);
        assert_eq!(shared.await.unwrap(), 7);
        assert_eq!(runtime.context().calls.load(Ordering::SeqCst), 1, "one request for both");
    }
}

#[rustfmt::skip]
mod cancellation {
    use pipewright::{pipeline, Runtime};

    #[tokio::test(start_paused = true)]
    async fn runs() -> super::Outcome {
        let runtime = Runtime::builder(()).start()?;
        let forever = pipeline!(|value: u8, _ctx: &()| { std::future::pending::<()>().await; });
        let handle = runtime.invoke_pipeline(&forever, 1)?;
        // README begin
        runtime.cancel(handle.ident())?;        // or handle.cancel(), runtime.cancel_all(&idents)
        // README end
        assert!(handle.await.unwrap_err().is_cancelled());
        Ok(())
    }

    // What a service would answer; not every answer is reached here.
    #[allow(dead_code)]
    #[derive(Debug)]
    enum Reply {
        Found(String),
        Superseded,
        Unavailable,
        Nobody,
        Failed(pipewright::Error),
    }

    async fn reply(handle: pipewright::Invocation<String>) -> Reply {
        use pipewright::CancelReason;
        // README begin
        match handle.await {
            Ok(found) => Reply::Found(found),
            Err(e) => match e.cancel_reason() {
                Some(CancelReason::Replaced) => Reply::Superseded,    // a newer search took over: 409
                Some(CancelReason::Stopped | CancelReason::ShutdownDeadline) => Reply::Unavailable,
                Some(CancelReason::HandleDropped) => Reply::Nobody,   // the client is gone
                _ => Reply::Failed(e),
            },
        }
        // README end
    }

    #[tokio::test(start_paused = true)]
    async fn each_reason_gets_its_reply() -> super::Outcome {
        let search = pipeline!(|query: String, _ctx: &()| {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        })
        .restartable();
        let runtime = Runtime::builder(()).start()?;
        let stale = runtime.invoke_pipeline(&search, "ru".to_owned())?;
        let fresh = runtime.invoke_pipeline(&search, "rust".to_owned())?;
        assert!(matches!(reply(stale).await, Reply::Superseded));
        assert!(matches!(reply(fresh).await, Reply::Found(found) if found == "rust"));
        let late = runtime.invoke_pipeline(&search, "rest".to_owned())?;
        runtime.stop();
        assert!(matches!(reply(late).await, Reply::Unavailable));
        let gone = runtime.invoke_pipeline(&search, "x".to_owned());
        assert!(gone.is_err(), "refused once stopped");
        Ok(())
    }
}

#[rustfmt::skip]
mod hooks_and_introspection {
    use pipewright::{in_pipeline, pipeline, Runtime};

    #[tokio::test(start_paused = true)]
    async fn runs() -> super::Outcome {
        let context = ();
        // README begin
        let runtime = Runtime::builder(context)
            .watcher(|event| println!("{} {:?} in {}", event.ident(), event.kind(), event.queue()))
            .on_cancel(|ident| println!("{ident} cancelled while waiting"))
            .start()?;
        // README end
        let save = pipeline!(|value: u8, _ctx: &()| { std::future::pending::<()>().await; }).queue("save");
        let ident = runtime.invoke_pipeline(&save, 1)?.ident().clone();
        // README continued
        runtime.active();          // live instances by queue: ident, state, parent, argument
        runtime.queue_info("save");     // running, waiting, performed, last result/error/cancellation
        runtime.instance(&ident);  // one live instance
        in_pipeline();             // does this code run inside a step?
        // README end
        assert_eq!(runtime.active().len(), 1);
        assert_eq!(runtime.queue_info("save").map(|queue| queue.running()), Some(1));
        assert!(runtime.instance(&ident).is_some());
        assert!(!in_pipeline());
        Ok(())
    }
}

#[rustfmt::skip]
mod event_streams {
    use pipewright::{pipeline, Runtime};

    #[tokio::test(start_paused = true)]
    async fn runs() -> super::Outcome {
        let context = ();
        // README begin
        use futures::StreamExt;
        let runtime = Runtime::builder(context).event_stream(1024).start()?;
        let mut events = runtime.events()?;                 // every event from now on
        let monitor = tokio::spawn(async move {
            while let Some(event) = events.next().await {   // ends when the runtime is gone
                println!("{} {:?} in {}", event.ident(), event.kind(), event.queue());
            }
        });
        // README end
        let p = pipeline!(|value: u8, _ctx: &()| { value = value + 1; });
        assert_eq!(runtime.invoke_pipeline(&p, 1)?.try_result().unwrap()?, 2);
        drop(runtime);
        monitor.await?;
        Ok(())
    }
}

#[rustfmt::skip]
mod retries_and_timeouts {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use pipewright::{pipeline, Backoff, RestartPolicy, Runtime};

    use super::api::{Api, FetchError};

    fn cached(id: u64) -> u64 {
        id
    }

    #[tokio::test(start_paused = true)]
    async fn runs() -> super::Outcome {
        // README begin
        let fetch = pipeline!(|id: u64, api: &Api| {
            id = api.fetch(id).await;            // Result<u64, FetchError>: busy now and then
            rescue!(|error| { id = cached(id); });
        })
        .retry_if(
            RestartPolicy::new(3, Duration::from_secs(10))?
                .with_backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2))?)?,
            |error| error.downcast_ref::<FetchError>().is_some_and(FetchError::is_transient),
        )
        .timeout(Duration::from_secs(5));
        // README end
        let runtime = Runtime::builder(Api::default()).start().unwrap();
        assert_eq!(runtime.invoke_pipeline(&fetch, 4).unwrap().await.unwrap(), 40, "the third try");
        // Not found is not transient: rescued after one try.
        assert_eq!(runtime.invoke_pipeline(&fetch, 0).unwrap().await.unwrap(), 0);
        assert_eq!(runtime.context().calls.load(Ordering::SeqCst), 4);
        Ok(())
    }
}

#[rustfmt::skip]
mod supervision {
    use std::time::Duration;

    use pipewright::{Backoff, BoxError, RestartPolicy, Runtime};
    use pipewright::supervision::{ChildSpec, Producer, Restart, Source, Strategy, Supervisor};

    #[derive(Clone, Debug, PartialEq)]
    struct Click(u64);

    struct ClickLog {
        clicks: Vec<Click>,
    }

    // README begin
    // Any log, queue or database client becomes a source: read(offset) -> Result<Option<item>>.
    impl Source for ClickLog {
        type Item = Click;
        async fn read(&mut self, offset: u64) -> Result<Option<Click>, BoxError> {
            Ok(self.clicks.get(offset as usize).cloned())     // None past the end
        }
    }

    // README end

    #[tokio::test(start_paused = true)]
    async fn runs() -> super::Outcome {
        let runtime = Runtime::builder(()).start()?;
        let mut seen = Vec::new();
        let click_log = ClickLog { clicks: (0..100).map(Click).collect() };
        // README continued
        let (clicks, mut consumer) = tokio::sync::mpsc::channel(64);
        let producer = Producer::new(click_log, clicks);
        let supervisor = Supervisor::new("clicks")
            .strategy(Strategy::OneForOne)
            .policy(RestartPolicy::new(5, Duration::from_secs(10))?
                .with_backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))?.with_jitter())?)
            .child(ChildSpec::new("click-producer", producer).restart(Restart::Transient));
        let handle = runtime.supervise(supervisor)?;
        while let Some(click) = consumer.recv().await { seen.push(click); }   // every click, once, in order
        // README end
        drop(handle);
        assert_eq!(seen, (0..100).map(Click).collect::<Vec<_>>());
        Ok(())
    }
}

#[rustfmt::skip]
mod tower_service {
    use std::time::Duration;

    use pipewright::{pipeline, Runtime};
    use tower::load_shed::error::Overloaded;
    use tower::load_shed::LoadShed;
    use tower::ServiceExt;

    struct Warehouse;

    impl Warehouse {
        async fn export(&self, rows: u32) -> u32 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rows
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn runs() -> super::Outcome {
        // README begin
        let export = pipeline!(|rows: u32, warehouse: &Warehouse| {
            rows = warehouse.export(rows).await;               // slow
        })
        .dropping();                                    // one export at a time, others refused
        let runtime = Runtime::builder(Warehouse).register("export", export).start()?;

        let service = LoadShed::new(runtime.handle::<u32>("export")?.into_service());
        let running = tokio::spawn(service.clone().oneshot(1_000));
        tokio::task::yield_now().await;                 // the export starts and holds the slot
        let busy = service.clone().oneshot(2_000).await.unwrap_err();
        assert!(busy.is::<Overloaded>());               // not ready: refused at once (HTTP 503)
        assert_eq!(running.await??, 1_000);
        // README end
        assert_eq!(service.oneshot(3_000).await?, 3_000);
        Ok(())
    }
}
