// SPDX-License-Identifier: MPL-2.0
//! delaybuffer side by side, in one run, with what users would use instead:
//! (a) CPU added per buffer: delaybuffer vs `queue min-threshold-time` (same
//!     delay, held up to the same delay + 1 s as delaybuffer's pacing), over
//!     many small buffers;
//! (b) 1080p RGBA at 30 fps delayed 7 s: CPU time and peak RSS of delaybuffer vs
//!     a CPU deep-copy delay (appsink -> copy into a deque -> appsrc);
//! (c) taps: CPU added per buffer by 3 taps of one delaybuffer vs 3
//!     delaybuffers behind a tee; peak RSS of 3 taps (7 s, 3.5 s, 1 s) of
//!     1080p RGBA / the frames 7 s holds; and the CPU of one short-pool copy
//!     (a source whose pool of 8 never grows) per copied buffer;
//! (d) a 20 s 720p H.264 file decoded behind a 2 s delay into a synchronised
//!     sink: peak RSS of delaybuffer vs `queue max-size-time` = delay + 1 s;
//! (e) 1,000 request/release cycles of a tap on a live source vs of a tee's
//!     request pads: RSS growth of each.
//!
//! Each variant runs in a child process (this binary again) so that CPU time
//! and peak RSS are its own. The CPU rows run alternating pairs of the two
//! variants, each pair beside a run of the source alone, in many child
//! processes pinned to one and the same CPU. Their bound row compares the
//! variants in the machine's quiet runs: what each adds at the tenth of its
//! runs that took least, less the source alone's tenth. On this shared
//! machine, episodes of load on the host make `queue`'s runs dearer (its
//! consumer is woken with a system call for nearly every buffer) and
//! delaybuffer's hardly: the median of the pairs' ratios then moves with the
//! share of such episodes in a run (0.71 to 0.86 over twelve runs of one
//! build), the quiet runs' ratio far less, and it is the figure least
//! favourable to delaybuffer. The median of the pairs' ratios is printed
//! beside it. Beside each CPU row: the context switches per 1000 buffers
//! (the hand-offs between threads, which cost most and vary most with the
//! machine's load), and, where valgrind is installed, the instructions per
//! buffer each variant adds, counted by callgrind, which do not depend on the
//! load. Run with `make bench` or `cargo bench --bench delaybuffer`.

mod common;

use common::{Bound, bound_row, launch, measure, median};
use gst::prelude::*;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

const SMALL_BUFFERS: u64 = 100_000;
/// Buffers run once in each CPU child before it measures (code paged in,
/// pools and caches filled).
const WARMUP_BUFFERS: u64 = 10_000;
const SMALL_DELAY_NS: u64 = 1_000_000_000;
/// delaybuffer's headroom when it paces non-live input (docs/delaybuffer.md).
const HEADROOM_NS: u64 = 1_000_000_000;
/// Pairs of runs in each CPU child, and children for each CPU ratio: the
/// threads' hand-offs through a queue or a delaybuffer vary by 10-20% from
/// run to run, and more from one process to the next than within one, so
/// many short children measure better than a few long ones. (a) has 18, so
/// that two runs agree; (c), whose runs take four times as long, 8.
const CPU_PAIRS: usize = 10;
const CPU_CHILDREN: usize = 18;
const CPU_CHILDREN_TAPS: usize = 8;
/// The CPU rows compare the variants in the machine's quiet runs: the tenth
/// of each variant's runs (and of the source's alone) that took least.
const QUIET_QUANTILE: f64 = 0.1;
const BIG_FRAMES: u64 = 900;
const BIG_DELAY_NS: u64 = 7_000_000_000;
const FRAME_BYTES: u64 = 1920 * 1080 * 4;
/// The delays of the three outputs in (c), small buffers.
const TAP_DELAYS_NS: [u64; 3] = [250_000_000, 500_000_000, 1_000_000_000];
/// Frames of 640x480 I420 pushed from a pool for the short-pool copy cost.
const POOL_FRAMES: u64 = 3000;
/// (d): 20 s of 720p at 30 fps, behind a 2 s delay.
const FILE_FRAMES: u64 = 600;
const FILE_DELAY_NS: u64 = 2_000_000_000;
/// (e): request/release cycles of one output.
const CYCLES: u32 = 1_000;
/// `source` into a delaybuffer whose three taps have `delays` (its `src`
/// unlinked), each into a fakesink.
fn taps(source: &str, delays: &[u64]) -> gst::Pipeline {
    let links: String = (0..delays.len())
        .map(|i| format!(" d.tap_{i} ! fakesink sync=false"))
        .collect();
    let pipeline = launch(&format!("{source} ! delaybuffer name=d{links}"));
    let d = pipeline.by_name("d").unwrap();
    for (i, delay) in delays.iter().enumerate() {
        d.static_pad(&format!("tap_{i}"))
            .unwrap()
            .set_property("delay", *delay);
    }
    pipeline
}

/// `source` into a tee with one delaybuffer per delay.
fn tee_of_delaybuffers(source: &str, delays: &[u64]) -> gst::Pipeline {
    let branches: String = delays
        .iter()
        .map(|d| format!(" t. ! delaybuffer delay={d} ! fakesink sync=false"))
        .collect();
    launch(&format!("{source} ! tee name=t{branches}"))
}

/// POOL_FRAMES frames from a pool of 8 (fixed) or growing (`max` 0), not
/// live, through a 1 s delaybuffer (short-pool=copy). Returns how many were
/// copied.
fn pool_source(max: u32) -> u64 {
    let caps: gst::Caps = "video/x-raw,format=I420,width=640,height=480,framerate=30/1"
        .parse()
        .unwrap();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps={} ! delaybuffer name=d delay=1000000000 ! fakesink sync=false",
        caps.to_string().replace(' ', "")
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(&caps), 640 * 480 * 3 / 2, 8, max);
    pool.set_config(config).unwrap();
    pool.set_active(true).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..POOL_FRAMES {
        let mut buffer = pool.acquire_buffer(None).unwrap();
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::SECOND.mul_div_floor(i, 30));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(600), &[gst::MessageType::Eos])
        .unwrap();
    let stats: gst::Structure = pipeline.by_name("d").unwrap().property("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    pool.set_active(false).unwrap();
    stats.get::<u64>("copied").unwrap()
}

/// CPU seconds (user, system), minor page faults and peak RSS in bytes of this process so far.
fn usage() -> (f64, f64, u64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime),
        secs(ru.ru_stime),
        ru.ru_minflt as u64,
        ru.ru_maxrss as u64 * 1024,
    )
}

/// What one variant cost: CPU (user, system), page faults, peak RSS.
#[derive(Debug, Clone, Copy)]
struct Cost {
    user: f64,
    sys: f64,
    faults: u64,
    rss: u64,
}

impl Cost {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

fn run_to_eos(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(..)), "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The CPU deep-copy delay people write by hand: every frame copied to a deque.
fn copy_delay(source: &str) {
    let input = launch(&format!("{source} ! appsink name=sink sync=false"));
    let output = launch("appsrc name=src format=time ! fakesink sync=false");
    let sink = input
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let src = output
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    output.set_state(gst::State::Playing).unwrap();
    input.set_state(gst::State::Playing).unwrap();
    let mut held: VecDeque<gst::Buffer> = VecDeque::new();
    let mut caps_set = false;
    while let Ok(sample) = sink.pull_sample() {
        if !caps_set {
            src.set_caps(sample.caps_owned().as_ref());
            caps_set = true;
        }
        let copy = sample.buffer().unwrap().copy_deep().unwrap();
        let newest = copy.pts().unwrap();
        held.push_back(copy);
        while held
            .front()
            .is_some_and(|b| newest.nseconds() - b.pts().unwrap().nseconds() >= BIG_DELAY_NS)
        {
            src.push_buffer(held.pop_front().unwrap()).unwrap();
        }
    }
    for b in held {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = output.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(600), &[gst::MessageType::Eos])
        .unwrap();
    input.set_state(gst::State::Null).unwrap();
    output.set_state(gst::State::Null).unwrap();
}

/// The small buffers of (a) and (c).
fn small_source(buffers: u64) -> String {
    format!(
        "videotestsrc num-buffers={buffers} pattern=black ! \
         video/x-raw,format=GRAY8,width=8,height=8,framerate=1000/1"
    )
}

/// A CPU variant of (a) or (c) over `buffers` small buffers; `none` is the
/// same source straight into a fakesink.
fn cpu_pipeline(variant: &str, buffers: u64) -> gst::Pipeline {
    let small = small_source(buffers);
    match variant {
        "none" => launch(&format!("{small} ! fakesink sync=false")),
        // Held up to what a paced delaybuffer holds (the delay and the
        // headroom): unbounded, a queue fed faster than it drains would
        // grow, and its page faults would be measured instead.
        "queue" => launch(&format!(
            "{small} ! queue min-threshold-time={SMALL_DELAY_NS} max-size-buffers=0 \
             max-size-bytes=0 max-size-time={} ! fakesink sync=false",
            SMALL_DELAY_NS + HEADROOM_NS
        )),
        "delaybuffer" => launch(&format!(
            "{small} ! delaybuffer delay={SMALL_DELAY_NS} ! fakesink sync=false"
        )),
        "taps" => taps(&small, &TAP_DELAYS_NS),
        "tee" => tee_of_delaybuffers(&small, &TAP_DELAYS_NS),
        other => panic!("unknown CPU variant {other}"),
    }
}

/// CPU seconds (user and system, every thread's) that running `pipeline` to
/// EOS takes.
fn cpu_to_eos(pipeline: &gst::Pipeline) -> f64 {
    let start = common::cpu_time();
    run_to_eos(pipeline);
    (common::cpu_time() - start).as_secs_f64()
}

/// Voluntary context switches of this process so far: each is a thread
/// that waited for another (a hand-off through a queue or a delaybuffer).
fn context_switches() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_nvcsw as f64
}

/// One CPU child comparing variants `a` and `b` (`a,b`): each once to warm
/// up, then CPU_PAIRS pairs of runs over SMALL_BUFFERS, which of the two goes
/// first alternating, each pair beside a run of the source alone. Prints the
/// medians of the context switches per 1000 buffers each variant made, then
/// the CPU seconds of each pair's three runs: the source alone, `a`, `b`.
fn cpu_child(variants: &str) -> Vec<f64> {
    let (a, b) = variants.split_once(',').unwrap();
    run_to_eos(&cpu_pipeline(a, WARMUP_BUFFERS));
    run_to_eos(&cpu_pipeline(b, WARMUP_BUFFERS));
    let run = |v: &str| {
        let switches = context_switches();
        let cpu = cpu_to_eos(&cpu_pipeline(v, SMALL_BUFFERS));
        (
            cpu,
            (context_switches() - switches) * 1000.0 / SMALL_BUFFERS as f64,
        )
    };
    let (mut switches_a, mut switches_b, mut triples) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..CPU_PAIRS {
        let none = run("none").0;
        let ((cpu_a, sw_a), (cpu_b, sw_b)) = if i % 2 == 0 {
            let first = run(a);
            (first, run(b))
        } else {
            let first = run(b);
            (run(a), first)
        };
        switches_a.push(sw_a);
        switches_b.push(sw_b);
        triples.extend([none, cpu_a, cpu_b]);
    }
    let mut values = vec![median(switches_a), median(switches_b)];
    values.extend(triples);
    values
}

/// One run of a CPU variant over a number of buffers (`delaybuffer:20000`),
/// for a profiler: `EDGEGUARD_BENCH_VARIANT=once:delaybuffer:20000 valgrind
/// --tool=callgrind target/release/deps/delaybuffer-*`; two lengths apart
/// give the instructions per buffer without the setup.
fn run_once(arg: &str) -> Vec<f64> {
    let (variant, buffers) = arg.split_once(':').unwrap_or((arg, "100000"));
    let buffers: u64 = buffers.parse().unwrap();
    let switches = context_switches();
    let cpu = cpu_to_eos(&cpu_pipeline(variant, buffers));
    // CPU seconds, then the voluntary context switches.
    vec![cpu, context_switches() - switches]
}

/// Buffers of the shorter of the two runs an instruction count compares.
const COUNTED_BUFFERS: u64 = 20_000;

/// Instructions (user space, every thread's) that `once:{variant}:{buffers}`
/// executes under callgrind, which counts them whatever else the machine
/// runs; `None` without valgrind.
fn instructions(variant: &str, buffers: u64) -> Option<f64> {
    let out = std::process::Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(std::env::current_exe().unwrap())
        .env(
            "EDGEGUARD_BENCH_VARIANT",
            format!("once:{variant}:{buffers}"),
        )
        .output()
        .ok()?;
    let collected = String::from_utf8_lossy(&out.stderr).lines().find_map(|l| {
        l.split_once("Collected :")
            .map(|(_, n)| n.trim().to_string())
    })?;
    collected.parse().ok()
}

/// Instructions per buffer that `variant` adds to the source alone: runs of
/// COUNTED_BUFFERS and twice that, so that what a run costs once (start,
/// negotiation, filling the delay, teardown) cancels out.
fn instructions_added(variant: &str, none: f64) -> Option<f64> {
    let short = instructions(variant, COUNTED_BUFFERS)?;
    let long = instructions(variant, 2 * COUNTED_BUFFERS)?;
    Some((long - short) / COUNTED_BUFFERS as f64 - none)
}

/// Prints the instructions per buffer `a` and `b` add (`none`: the source
/// alone's, per buffer), and their ratio; nothing without valgrind.
fn instruction_lines(a: &str, b: &str) {
    let none = (|| {
        let short = instructions("none", COUNTED_BUFFERS)?;
        Some((instructions("none", 2 * COUNTED_BUFFERS)? - short) / COUNTED_BUFFERS as f64)
    })();
    let counted =
        none.and_then(|none| Some((instructions_added(a, none)?, instructions_added(b, none)?)));
    match counted {
        Some((x, y)) => println!(
            "  instructions per buffer (callgrind, user space, load-independent): \
             {a} {x:.0}, {b} {y:.0}, ratio {:.2}",
            x / y
        ),
        None => println!("  instructions per buffer: valgrind not found, not counted"),
    }
}

/// A 20 s 720p H.264 MP4 (x264enc, a keyframe a second) at `path`; its size.
fn make_h264_file(path: &str) -> Vec<f64> {
    run_to_eos(&launch(&format!(
        "videotestsrc num-buffers={FILE_FRAMES} pattern=ball ! \
         video/x-raw,width=1280,height=720,framerate=30/1 ! \
         x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! mp4mux ! \
         filesink location={path}"
    )));
    vec![std::fs::metadata(path).unwrap().len() as f64]
}

/// (d): the file decoded behind `stage` into a synchronised sink; this
/// process's peak RSS (VmHWM) and the frames the sink got.
fn decode_behind(stage: &str, path: &str) -> Vec<f64> {
    let pipeline = launch(&format!(
        "filesrc location={path} ! qtdemux ! h264parse ! avdec_h264 ! {stage} ! \
         fakesink name=out sync=true"
    ));
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = frames.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    run_to_eos(&pipeline);
    vec![
        common::proc_status_bytes("VmHWM") as f64,
        frames.load(std::sync::atomic::Ordering::Relaxed) as f64,
    ]
}

/// (e): a live source into `element` (a delaybuffer or a tee) whose `src`
/// or first request pad feeds a synchronised fakesink; CYCLES times an
/// output (`template`) is requested, linked to a new fakesink, carries one
/// buffer, and is released. RSS before the first cycle and after the last,
/// and the seconds the cycles took.
fn cycle_outputs(element: &str, template: &str) -> Vec<f64> {
    let main_sink = match element {
        "delaybuffer" => "e. ! fakesink name=main sync=true",
        _ => "e.src_0 ! fakesink name=main sync=true",
    };
    let pipeline = launch(&format!(
        "videotestsrc is-live=true ! \
         video/x-raw,format=I420,width=320,height=240,framerate=60/1 ! \
         {element} name=e {main_sink}"
    ));
    let element = pipeline.by_name("e").unwrap();
    let (sent, arrived) = mpsc::sync_channel::<()>(1);
    probe_first_buffer(&pipeline.by_name("main").unwrap(), &sent);
    pipeline.set_state(gst::State::Playing).unwrap();
    arrived
        .recv_timeout(Duration::from_secs(30))
        .expect("a buffer at the main sink");
    let before = common::proc_status_bytes("VmRSS");
    let start = std::time::Instant::now();
    for _ in 0..CYCLES {
        cycle_once(&pipeline, &element, template, &sent, &arrived);
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = common::proc_status_bytes("VmRSS");
    pipeline.set_state(gst::State::Null).unwrap();
    vec![before as f64, after as f64, seconds]
}

/// Sends on `sent` when the first buffer reaches `sink`.
fn probe_first_buffer(sink: &gst::Element, sent: &mpsc::SyncSender<()>) {
    let sent = sent.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = sent.try_send(());
            gst::PadProbeReturn::Remove
        });
}

/// One request/link/one buffer/release cycle of `template` on `element`.
fn cycle_once(
    pipeline: &gst::Pipeline,
    element: &gst::Element,
    template: &str,
    sent: &mpsc::SyncSender<()>,
    arrived: &mpsc::Receiver<()>,
) {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .property("async", false)
        .build()
        .unwrap();
    probe_first_buffer(&sink, sent);
    pipeline.add(&sink).unwrap();
    // Playing before it is linked: a buffer pushed into a sink still
    // flushing would be FLUSHING upstream.
    sink.sync_state_with_parent().unwrap();
    let pad = element.request_pad_simple(template).unwrap();
    pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    arrived
        .recv_timeout(Duration::from_secs(30))
        .expect("a buffer through the requested output");
    element.release_request_pad(&pad);
    sink.set_state(gst::State::Null).unwrap();
    pipeline.remove(&sink).unwrap();
}

/// Keeps this process (the calling thread, and every thread it starts from
/// now on) on one CPU, the same for every child of every run: the last one
/// this process may use. Spread over two cores, the source's thread and the
/// element's hand each buffer over through cache lines (the lock, the held
/// items, the buffer's refcount) that move between the cores or not, as the
/// scheduler places the threads: the same instructions then cost 0.6 or 0.8
/// us from one run to the next. And the CPUs differ: the first takes most of
/// the device interrupts, which made queue's wake-ups dearer there (the
/// ratio read 0.78 on CPU 0 against 0.82 on CPU 1, fifteen children each,
/// alternating), so a run whose children happened to start on CPU 0 read
/// apart from one whose children started on CPU 1.
fn pin_to_one_cpu() {
    // SAFETY: the sets are zeroed before use; sched_getaffinity fills the
    // first, sched_setaffinity only reads the second.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&cpu| libc::CPU_ISSET(cpu, &allowed))
            .expect("this process may run on no CPU");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size, &set),
            0,
            "cannot pin the CPU child to CPU {cpu}"
        );
    }
}

/// Runs one variant in this process and prints its figures.
fn child(variant: &str) {
    if variant.starts_with("cpu:") {
        // Before any thread exists: every thread started later inherits it.
        pin_to_one_cpu();
    }
    gst::init().unwrap();
    gstedgeguard::plugin_register_static().unwrap();
    let (name, arg) = variant.split_once(':').unwrap_or((variant, ""));
    let values = match name {
        "cpu" => cpu_child(arg),
        "once" => run_once(arg),
        "h264-file" => make_h264_file(arg),
        "file-delaybuffer" => decode_behind(&format!("delaybuffer delay={FILE_DELAY_NS}"), arg),
        "file-queue" => decode_behind(
            &format!(
                "queue max-size-time={} max-size-buffers=0 max-size-bytes=0",
                FILE_DELAY_NS + HEADROOM_NS
            ),
            arg,
        ),
        "cycle-taps" => cycle_outputs("delaybuffer", "tap_%u"),
        "cycle-tee" => cycle_outputs("tee", "src_%u"),
        _ => big_child(variant),
    };
    common::report(&values);
}

/// The variants of (b) and (c) that run a pipeline once: CPU (user,
/// system), page faults, peak RSS and short-pool copies.
fn big_child(variant: &str) -> Vec<f64> {
    let big = format!(
        "videotestsrc num-buffers={BIG_FRAMES} pattern=black ! video/x-raw,format=RGBA,width=1920,height=1080,framerate=30/1"
    );
    let (user0, sys0, faults0, _) = usage();
    let mut copied = 0;
    match variant {
        "big-none" => run_to_eos(&launch(&format!("{big} ! fakesink sync=false"))),
        "big-delaybuffer" => run_to_eos(&launch(&format!(
            "{big} ! delaybuffer delay={BIG_DELAY_NS} ! fakesink sync=false"
        ))),
        "big-queue" => run_to_eos(&launch(&format!(
            "{big} ! queue min-threshold-time={BIG_DELAY_NS} max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! fakesink sync=false"
        ))),
        "big-copy" => copy_delay(&big),
        "big-taps" => run_to_eos(&taps(
            &big,
            &[BIG_DELAY_NS, BIG_DELAY_NS / 2, 1_000_000_000],
        )),
        "pool-fixed" => copied = pool_source(8),
        "pool-growing" => copied = pool_source(0),
        other => panic!("unknown variant {other}"),
    }
    let (user1, sys1, faults1, rss) = usage();
    vec![
        user1 - user0,
        sys1 - sys0,
        (faults1 - faults0) as f64,
        rss as f64,
        copied as f64,
    ]
}

/// The child's figures as its `Cost`.
fn cost(variant: &str) -> Cost {
    let v = measure(variant);
    Cost {
        user: v[0],
        sys: v[1],
        faults: v[2] as u64,
        rss: v[3] as u64,
    }
}

fn main() {
    if let Some(variant) = common::variant() {
        child(&variant);
        return;
    }
    let start = std::time::Instant::now();
    if section("a") {
        cpu_against_queue();
    }
    let big_none = section("b").then(big_frames);
    if section("c") {
        taps_and_short_pools(big_none.unwrap_or_else(|| cost("big-none")));
    }
    if section("d") {
        decoded_file();
    }
    if section("e") {
        output_cycles();
    }
    println!(
        "delaybuffer: the bench took {:.0} s",
        start.elapsed().as_secs_f64()
    );
}

/// Whether to run section `name` (a to e): all of them, unless
/// EDGEGUARD_BENCH_SECTIONS names some (e.g. `a,c`).
fn section(name: &str) -> bool {
    std::env::var("EDGEGUARD_BENCH_SECTIONS")
        .map(|only| only.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

/// CPU added per buffer by `a` and by `b` in the machine's quiet runs (us)
/// and their ratio, the bound row; beside it, the median of all the pairs'
/// ratios a/b and their quartiles, so that the spread shows.
fn cpu_pairs(a: &str, b: &str, children: usize) -> (f64, f64, f64) {
    let children: Vec<Vec<f64>> = (0..children)
        .map(|_| measure(&format!("cpu:{a},{b}")))
        .collect();
    let runs: Vec<Vec<[f64; 3]>> = children.iter().map(|c| pair_runs(c)).collect();
    let mut ratios = pair_ratios(&runs);
    ratios.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    println!(
        "  the {} pairs' ratios {a}/{b}: min {:.2}, quartiles {:.2} {:.2} {:.2}, max {:.2}",
        ratios.len(),
        at(0),
        at(1),
        at(2),
        at(3),
        at(4)
    );
    // How often a thread waited for the other: the hand-offs are most of
    // the cost and of its spread, and they depend on the machine's load.
    println!(
        "  context switches per 1000 buffers (median of the children's medians): {a} {:.0}, {b} {:.0}",
        median(children.iter().map(|c| c[0]).collect()),
        median(children.iter().map(|c| c[1]).collect())
    );
    let column = |i: usize| runs.iter().flatten().map(|t| t[i]).collect::<Vec<_>>();
    let none = quantile(column(0), QUIET_QUANTILE);
    let added =
        |i: usize| (quantile(column(i), QUIET_QUANTILE) - none) / SMALL_BUFFERS as f64 * 1e6;
    let (added_a, added_b) = (added(1), added(2));
    (added_a, added_b, added_a / added_b)
}

/// The CPU seconds of each pair's three runs (the source alone, `a`, `b`)
/// that a CPU child printed after its two medians of context switches.
fn pair_runs(child: &[f64]) -> Vec<[f64; 3]> {
    child[2..]
        .chunks_exact(3)
        .map(|t| [t[0], t[1], t[2]])
        .collect()
}

/// Each pair's ratio of what `a` and `b` added over the median of the
/// source's runs alone in the same child.
fn pair_ratios(children: &[Vec<[f64; 3]>]) -> Vec<f64> {
    children
        .iter()
        .flat_map(|runs| {
            let none = median(runs.iter().map(|t| t[0]).collect());
            runs.iter().map(move |t| (t[1] - none) / (t[2] - none))
        })
        .collect()
}

/// The value below which a fraction `q` of `values` lies (the nearest rank).
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(|x, y| x.partial_cmp(y).unwrap());
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// (a): delaybuffer's CPU per buffer against queue min-threshold-time.
fn cpu_against_queue() {
    println!(
        "delaybuffer (a): CPU added per buffer, {SMALL_BUFFERS} 8x8 GRAY8 buffers, 1 s delay \
         (queue held up to 2 s, as delaybuffer paces), {CPU_CHILDREN} processes of {CPU_PAIRS} alternating pairs of runs:"
    );
    let (delay, queue, ratio) = cpu_pairs("delaybuffer", "queue", CPU_CHILDREN);
    println!("  queue min-threshold-time : {queue:7.3} us/buffer (quiet runs)");
    println!("  delaybuffer              : {delay:7.3} us/buffer (quiet runs)");
    instruction_lines("delaybuffer", "queue");
    bound_row(
        "delaybuffer",
        "CPU per buffer delaybuffer/queue, per CPU second",
        ratio,
        3,
        Bound::AtMost(0.9),
    );
}

/// (b): 1080p RGBA behind 7 s against a copy delay; the run without a delay
/// stage, which (c) uses too.
fn big_frames() -> Cost {
    // Page faulting dominates (b) and its system time varies from run to run:
    // each variant is the run of median CPU among three.
    let measure_median = |variant: &str| {
        let mut runs: Vec<Cost> = (0..3).map(|_| cost(variant)).collect();
        runs.sort_by(|a, b| a.cpu().partial_cmp(&b.cpu()).unwrap());
        runs[1]
    };
    let none = measure_median("big-none");
    let held = (BIG_DELAY_NS / 1_000_000_000 * 30) * FRAME_BYTES;
    println!(
        "delaybuffer (b): 1080p RGBA 30 fps, {BIG_FRAMES} frames, 7 s delay ({:.0} MiB of frames held); \
         cost above the same pipeline without a delay stage (median of 3):",
        mib(held)
    );
    println!(
        "  {:<22} {:>8} {:>8} {:>8} {:>12} {:>14}",
        "variant", "CPU s", "user s", "sys s", "page faults", "peak RSS MiB"
    );
    let mut costs = Vec::new();
    for (name, variant) in [
        ("delaybuffer", "big-delaybuffer"),
        ("queue min-threshold", "big-queue"),
        ("copy delay (appsink)", "big-copy"),
    ] {
        let c = measure_median(variant);
        println!(
            "  {:<22} {:>8.3} {:>8.3} {:>8.3} {:>12} {:>14.0}",
            name,
            c.cpu() - none.cpu(),
            c.user - none.user,
            c.sys - none.sys,
            c.faults.saturating_sub(none.faults),
            mib(c.rss.saturating_sub(none.rss))
        );
        costs.push(c);
    }
    let (db, copy) = (costs[0], costs[2]);
    let cpu_ratio = (copy.cpu() - none.cpu()) / (db.cpu() - none.cpu()).max(1e-3);
    let rss_ratio = db.rss.saturating_sub(none.rss) as f64 / held as f64;
    bound_row(
        "delaybuffer",
        "delay stage CPU copy/delaybuffer, 1080p 7 s",
        cpu_ratio,
        1,
        Bound::AtLeast(10.0),
    );
    bound_row(
        "delaybuffer",
        "peak RSS / held frames",
        rss_ratio,
        2,
        Bound::AtMost(1.02),
    );
    none
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// (c): taps against a tee of delaybuffers, and what a short-pool copy costs.
fn taps_and_short_pools(big_none: Cost) {
    println!(
        "delaybuffer (c): 3 outputs delayed 0.25, 0.5 and 1 s, {SMALL_BUFFERS} 8x8 buffers, \
         {CPU_CHILDREN_TAPS} processes of {CPU_PAIRS} alternating pairs of runs:"
    );
    let (taps, tee, ratio) = cpu_pairs("taps", "tee", CPU_CHILDREN_TAPS);
    println!("  tee + 3 delaybuffers     : {tee:7.2} us/buffer (quiet runs)");
    println!("  3 taps of one window     : {taps:7.2} us/buffer (quiet runs)");
    instruction_lines("taps", "tee");
    bound_row(
        "delaybuffer",
        "CPU per buffer 3 taps/3 delaybuffers, per CPU second",
        ratio,
        3,
        Bound::AtMost(1.0),
    );

    let held = (BIG_DELAY_NS / 1_000_000_000 * 30) * FRAME_BYTES;
    let big = cost("big-taps");
    let rss_ratio = big.rss.saturating_sub(big_none.rss) as f64 / held as f64;
    println!("  1080p RGBA, taps of 7, 3.5 and 1 s (one run):");
    bound_row(
        "delaybuffer",
        "peak RSS of 3 taps / held frames",
        rss_ratio,
        2,
        Bound::AtMost(1.05),
    );

    const ROUNDS: usize = 3;
    let run = |variant: &str| {
        let v = measure(variant);
        (v[0] + v[1], v[4])
    };
    let runs = |variant: &str| {
        let mut r: Vec<_> = (0..ROUNDS).map(|_| run(variant)).collect();
        r.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        r[ROUNDS / 2]
    };
    let (fixed, copied) = runs("pool-fixed");
    let (growing, _) = runs("pool-growing");
    let per_copy = (fixed - growing) / (copied.max(1.0)) * 1e6;
    println!(
        "  short-pool=copy, 640x480 I420 from a pool of 8: {copied:.0} of {POOL_FRAMES} copied, \
         {per_copy:.1} us CPU per copy ({:.0} bytes; median of {ROUNDS})",
        640.0 * 480.0 * 1.5
    );
}

/// (d): the 20 s 720p file decoded behind a 2 s delaybuffer against a
/// queue that holds the delay plus delaybuffer's headroom; the two children
/// of a pair run at the same time (peak RSS is each process's own).
fn decoded_file() {
    const PAIRS: usize = 2;
    let path = std::env::temp_dir().join(format!("edgeguard-bench-{}.mp4", std::process::id()));
    let path = path.to_str().unwrap().to_string();
    measure(&format!("h264-file:{path}"));
    println!(
        "delaybuffer (d): a 20 s 1280x720 H.264 file decoded (avdec_h264) behind a 2 s delay into \
         fakesink sync=true; peak RSS (VmHWM) of each process, {PAIRS} pairs run side by side:"
    );
    let pairs: Vec<Vec<Vec<f64>>> = (0..PAIRS)
        .map(|_| {
            common::measure_together(&[
                format!("file-delaybuffer:{path}"),
                format!("file-queue:{path}"),
            ])
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    for p in &pairs {
        println!(
            "  delaybuffer delay=2 s: {:6.0} MiB ({} frames out); queue max-size-time=3 s: \
             {:6.0} MiB ({} frames out)",
            mib(p[0][0] as u64),
            p[0][1],
            mib(p[1][0] as u64),
            p[1][1]
        );
    }
    let ratio = median(pairs.iter().map(|p| p[0][0] / p[1][0]).collect());
    bound_row(
        "delaybuffer",
        "peak RSS 20 s 720p file, delaybuffer/queue (delay + 1 s)",
        ratio,
        3,
        Bound::AtMost(1.1),
    );
}

/// (e): RSS growth over CYCLES request/release cycles of a tap against a
/// tee's request pads, both on a live source, the two children at once.
fn output_cycles() {
    println!(
        "delaybuffer (e): {CYCLES} request/link/one buffer/release cycles on a live 320x240 60 fps \
         source, RSS before the first and after the last:"
    );
    let runs = common::measure_together(&["cycle-taps".to_string(), "cycle-tee".to_string()]);
    let growth = |v: &Vec<f64>| (v[1] - v[0]) / 1e6;
    for (name, v) in [("delaybuffer tap_%u", &runs[0]), ("tee src_%u", &runs[1])] {
        println!(
            "  {name:<18}: {:6.1} -> {:6.1} MB, +{:.1} MB ({:.1} s)",
            v[0] / 1e6,
            v[1] / 1e6,
            growth(v),
            v[2]
        );
    }
    bound_row(
        "delaybuffer",
        "RSS growth 1000 cycles, taps - tee request pads (MB)",
        growth(&runs[0]) - growth(&runs[1]),
        1,
        Bound::AtMost(20.0),
    );
}
