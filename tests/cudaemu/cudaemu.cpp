/* cudaemu: the executor behind cudaemu.h: fibers and their scheduler, barriers and warp
 * exchanges, the worker threads that run blocks concurrently, and the emulated runtime (device
 * memory registry, copies, streams, errors) and cuBLAS GEMM.
 *
 * Execution model. A launch hands its blocks to a pool of host worker threads. A worker runs one
 * block at a time: every thread of the block is a fiber with its own stack, and the worker's
 * scheduler resumes the runnable fibers in order of their linear thread index. A fiber runs until
 * it finishes, or until it reaches a barrier that not all of its partners have reached; then it
 * yields back to the scheduler. The last thread to arrive releases the barrier and runs on. If a
 * full pass finds nothing runnable while threads are still waiting, the block is stuck (a barrier
 * that some thread never reaches) and the launch fails with a description. CUDAEMU_ORDER=reverse
 * resumes the threads in the opposite order, to expose kernels that depend on it.
 *
 * Fibers switch through a few lines of x86-64 assembly (callee-saved registers and the stack
 * pointer, no system call) or, elsewhere or with -DCUDAEMU_UCONTEXT, through POSIX ucontext
 * (makecontext / swapcontext, which costs a sigprocmask system call per switch).
 */
#include "cudaemu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__) || defined(CUDAEMU_UCONTEXT)
#define CUDAEMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

/* Under AddressSanitizer every fiber switch is announced (see switch_context). */
#if defined(__SANITIZE_ADDRESS__)
#define CUDAEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDAEMU_ASAN 1
#endif
#endif
#ifdef CUDAEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Completes the runtime's opaque stream type. */
struct CUstream_st {
    unsigned flags;
};

namespace cudaemu {

thread_local uint3 thread_idx;
thread_local uint3 block_idx;
thread_local dim3 block_dim;
thread_local dim3 grid_dim;

// Device limits of the emulated GPU (an H100's).
constexpr size_t kDefaultSharedLimit = 48 * 1024;
constexpr size_t kOptInSharedLimit = 227 * 1024;
constexpr unsigned kMaxBlockThreads = 1024;
constexpr size_t kFiberStackBytes = 256 * 1024;
constexpr size_t kSignalStackBytes = 64 * 1024;
constexpr unsigned char kPoisonByte = 0xff; /* a float of four such bytes is NaN */

// ---------------------------------------------------------------------------------------------
// Errors: the runtime's "last error" is per host thread, like CUDA's.

static thread_local cudaError_t last_error = cudaSuccess;
static thread_local cudaError_t detail_code = cudaSuccess;
static thread_local std::string detail_text; /* what the executor found, for that code */
static thread_local std::string error_text;  /* storage behind cudaGetErrorString */

static void set_error(cudaError_t code, const std::string &detail) {
    if (last_error == cudaSuccess) last_error = code;
    detail_code = code;
    detail_text = detail;
    fprintf(stderr, "%s\n", detail.c_str());
}

static std::string format_text(const char *fmt, va_list ap) {
    char buffer[1024];
    vsnprintf(buffer, sizeof buffer, fmt, ap);
    return buffer;
}

static std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static std::string format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string text = format_text(fmt, ap);
    va_end(ap);
    return text;
}

// ---------------------------------------------------------------------------------------------
// Device memory registry: every cudaMalloc'd block, so that copies, kernel arguments and GEMM
// operands can be checked to be (entirely) device memory.

/* A device block sits in its own mapping, between two inaccessible guard pages, and ends flush
 * against the second one (to the 256-byte granularity of CUDA's alignment): a kernel that runs
 * off either end faults at once, and the fault becomes an illegal-address launch failure. */
struct device_block {
    size_t n_bytes;
    char *map;
    size_t map_bytes;
};

struct memory_registry {
    std::mutex lock;
    std::map<uintptr_t, device_block> blocks; /* by address */
};

static memory_registry &registry() {
    static memory_registry *r = new memory_registry; /* never destroyed: used until exit */
    return *r;
}

enum class where { host, device, overrun };

/* Where the byte range [p, p + n_bytes) lies: wholly outside device memory, wholly inside one
 * block, or starting inside a block and running past its end. */
static where locate(const void *p, size_t n_bytes) {
    memory_registry &r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    auto it = r.blocks.upper_bound(begin);
    if (it == r.blocks.begin()) return where::host;
    --it;
    const uintptr_t base = it->first, end = base + it->second.n_bytes;
    if (begin > end || (begin == end && n_bytes > 0)) return where::host;
    return begin + n_bytes <= end ? where::device : where::overrun;
}

static const char *where_name(where w) {
    return w == where::host     ? "host memory"
           : w == where::device ? "device memory"
                                : "a range overrunning its device block";
}

std::string outside_device(const void *p, size_t n_bytes) {
    where w = locate(p, n_bytes);
    return w == where::device ? std::string() : where_name(w);
}

/* For a faulting address: which guard page of which block it hit, if any. */
static std::string describe_address(const void *p) {
    memory_registry &r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    for (const auto &entry : r.blocks) {
        const device_block &b = entry.second;
        const uintptr_t map = reinterpret_cast<uintptr_t>(b.map);
        if (a < map || a >= map + b.map_bytes) continue;
        const uintptr_t begin = entry.first, end = begin + b.n_bytes;
        char text[160];
        if (a >= end)
            snprintf(text, sizeof text, "%p is %zu bytes past the end of a %zu-byte device block",
                     p, (size_t)(a - end), b.n_bytes);
        else
            snprintf(text, sizeof text, "%p is %zu bytes before a %zu-byte device block", p,
                     (size_t)(begin - a), b.n_bytes);
        return text;
    }
    char text[96];
    snprintf(text, sizeof text, "%p is not device memory", p);
    return text;
}

// ---------------------------------------------------------------------------------------------
// Fiber contexts

/* The stack a context runs on, for AddressSanitizer: a fiber's is known when it is made; the
 * scheduler's (its host thread's own) is learnt at the first switch away from it. */
struct stack_extent {
    const void *bottom = nullptr;
    size_t size = 0;
    void *fake_stack = nullptr; /* ASan's save slot while the context is switched out */
};

#ifndef CUDAEMU_USE_UCONTEXT
struct context {
    void *sp;
    stack_extent extent;
};

/* Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp,
 * switches to load_sp and pops the registers saved there; `ret` resumes that fiber. */
extern "C" void cudaemu_switch_stack(void **save_sp, void *load_sp);
asm(R"(
    .text
    .globl cudaemu_switch_stack
    .hidden cudaemu_switch_stack
    .type cudaemu_switch_stack, @function
cudaemu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cudaemu_switch_stack, .-cudaemu_switch_stack
)");

static void raw_switch(context &from, context &to) {
    cudaemu_switch_stack(&from.sp, to.sp);
}

/* A fresh stack whose first switch "returns" into entry: six zeroed registers, entry's address
 * for `ret`, and a null return address for entry itself, which leaves the stack pointer at
 * 8 mod 16 on entry, as the ABI wants after a call. */
static void init_context(context &c, char *stack, size_t n_bytes, void (*entry)()) {
    void **sp = reinterpret_cast<void **>(reinterpret_cast<uintptr_t>(stack + n_bytes) &
                                          ~static_cast<uintptr_t>(15));
    *--sp = nullptr;
    *--sp = reinterpret_cast<void *>(entry);
    for (int i = 0; i < 6; i++)
        *--sp = nullptr;
    c.sp = sp;
}
#else
struct context {
    ucontext_t uc;
    stack_extent extent;
};

static void raw_switch(context &from, context &to) {
    if (swapcontext(&from.uc, &to.uc) != 0) {
        perror("cudaemu: swapcontext");
        abort();
    }
}

static void init_context(context &c, char *stack, size_t n_bytes, void (*entry)()) {
    if (getcontext(&c.uc) != 0) {
        perror("cudaemu: getcontext");
        abort();
    }
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = n_bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

/* AddressSanitizer keeps one stack per host thread. Unless told of each switch it takes a fiber's
 * frames for a wild stack pointer (and cannot unpoison the right stack before a noreturn call,
 * such as fault()'s), so each switch is bracketed by its start and finish calls. */
#ifdef CUDAEMU_ASAN
static thread_local context *switched_from;
#endif

static void stack_leave(context &from, context &to) {
#ifdef CUDAEMU_ASAN
    switched_from = &from;
    __sanitizer_start_switch_fiber(&from.extent.fake_stack, to.extent.bottom, to.extent.size);
#else
    (void)from;
    (void)to;
#endif
}

/* On arrival in `self`: the first arrival from the scheduler tells its stack's extent. */
static void stack_arrive(context &self) {
#ifdef CUDAEMU_ASAN
    const void *bottom = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(self.extent.fake_stack, &bottom, &size);
    if (switched_from != nullptr && switched_from->extent.bottom == nullptr) {
        switched_from->extent.bottom = bottom;
        switched_from->extent.size = size;
    }
#else
    (void)self;
#endif
}

static void switch_context(context &from, context &to) {
    stack_leave(from, to);
    raw_switch(from, to);
    stack_arrive(from);
}

/* A fiber's stack made ready for a fresh start: frames abandoned on it (a faulted thread) leave
 * ASan's redzone poison behind, which the next kernel's frames must not trip over. */
static void start_context(context &c, char *stack, size_t n_bytes, void (*entry)()) {
    init_context(c, stack, n_bytes, entry);
    c.extent.bottom = stack;
    c.extent.size = n_bytes;
    c.extent.fake_stack = nullptr;
#ifdef CUDAEMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(stack, n_bytes);
#endif
}

// ---------------------------------------------------------------------------------------------
// Workers, blocks and fibers

enum class fiber_state { idle, runnable, wait_block, wait_warp, done, faulted };

struct fiber {
    context ctx;
    char *stack; /* usable stack, above a guard page */
    uint3 tid;
    unsigned linear; /* x + y*Dx + z*Dx*Dy: defines warp and lane */
    fiber_state state;
    bool in_kernel;    /* suspended inside the kernel body (needs a reset if abandoned) */
    uint64_t view[32]; /* this lane's copy of its warp's last exchange */
};

struct warp_state {
    unsigned existing;    /* lanes that exist (a last, partial warp has fewer) */
    unsigned arrived;     /* lanes waiting at the current exchange */
    unsigned mask_of[32]; /* the mask each waiting lane passed */
    const char *what_of[32];
    uint32_t count[32];    /* exchanges each lane has entered */
    uint64_t words[2][32]; /* published words, double-buffered by count parity */
};

struct job {
    const launch_spec *spec;
    void (*body)(void *);
    void *context;
    unsigned n_threads;
    uint64_t n_blocks;
    std::atomic<uint64_t> next_block{0};
    std::atomic<bool> failed{false};
    std::mutex fault_lock;
    std::string fault_text;
};

struct worker {
    std::vector<fiber *> fibers;
    context scheduler;
    fiber *running = nullptr;
    const job *current = nullptr;
    unsigned n_threads = 0, n_done = 0;
    unsigned barrier_count = 0;
    const char *barrier_file = nullptr;
    int barrier_line = 0;
    std::vector<warp_state> warps;
    unsigned char *shared = nullptr;
    size_t shared_capacity = 0, shared_bytes = 0;
    bool faulted = false;
    std::string fault_text;
    std::vector<char> signal_stack; /* this host thread's alternate signal stack */
};

static thread_local worker *this_worker;

static void fiber_entry();

static fiber *new_fiber() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t n_bytes = kFiberStackBytes + page;
    void *map = mmap(nullptr, n_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        perror("cudaemu: mmap of a fiber stack");
        abort();
    }
    /* A stack overflow faults on the guard page instead of corrupting the next stack. */
    if (mprotect(map, page, PROT_NONE) != 0) {
        perror("cudaemu: mprotect of a stack guard page");
        abort();
    }
    fiber *f = new fiber();
    f->stack = static_cast<char *>(map) + page;
    start_context(f->ctx, f->stack, kFiberStackBytes, fiber_entry);
    f->state = fiber_state::idle;
    return f;
}

static void yield_to_scheduler() {
    worker &w = *this_worker;
    switch_context(w.running->ctx, w.scheduler);
}

/* Every fiber runs this loop forever: one pass of the kernel body per block it is given. */
static void fiber_entry() {
    stack_arrive(this_worker->running->ctx);
    for (;;) {
        worker &w = *this_worker;
        fiber &f = *w.running;
        f.in_kernel = true;
        w.current->body(w.current->context);
        f.in_kernel = false;
        f.state = fiber_state::done;
        w.n_done++;
        yield_to_scheduler();
    }
}

static std::string where_am_i() {
    worker *w = this_worker;
    if (w == nullptr || w->running == nullptr || w->current == nullptr)
        return "cudaemu (outside a kernel)";
    return format("cudaemu: %s block (%u,%u,%u) thread (%u,%u,%u)", w->current->spec->kernel,
                  block_idx.x, block_idx.y, block_idx.z, thread_idx.x, thread_idx.y, thread_idx.z);
}

void fault(const char *fmt, ...) {
    worker *w = this_worker;
    {
        /* A block of its own: a faulted fiber is abandoned, never unwound, so its frame must own
         * no memory by the time it yields. */
        va_list ap;
        va_start(ap, fmt);
        std::string text = where_am_i() + ": " + format_text(fmt, ap);
        va_end(ap);
        if (w == nullptr || w->running == nullptr) {
            fprintf(stderr, "%s\n", text.c_str());
            abort();
        }
        w->fault_text = text;
    }
    w->faulted = true;
    w->running->state = fiber_state::faulted;
    yield_to_scheduler();
    abort(); /* a faulted fiber is never resumed */
}

/* SIGSEGV / SIGBUS inside a kernel: the GPU would report an illegal address, so the launch
 * fails and the fiber is abandoned (the handler never returns; it runs on the worker's
 * alternate signal stack, so even a fiber stack overflow lands here). Anywhere else the signal
 * takes its default action. */
static void on_memory_fault(int sig, siginfo_t *info, void *) {
    worker *w = this_worker;
    if (w != nullptr && w->running != nullptr && w->running->in_kernel) {
        w->faulted = true;
        w->fault_text = where_am_i() + ": illegal address: " + describe_address(info->si_addr);
        w->running->state = fiber_state::faulted;
        yield_to_scheduler();
    }
    signal(sig, SIG_DFL); /* returning re-executes the access, which now kills the process */
}

/* The handler once per process; an alternate stack once per host thread, held by the thread's
 * worker, which lives as long as the thread. */
static void install_fault_handler(worker &w) {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = on_memory_fault;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&action.sa_mask);
        sigaction(SIGSEGV, &action, nullptr);
        sigaction(SIGBUS, &action, nullptr);
    });
    w.signal_stack.resize(kSignalStackBytes);
    stack_t alt;
    alt.ss_sp = w.signal_stack.data();
    alt.ss_size = w.signal_stack.size();
    alt.ss_flags = 0;
    sigaltstack(&alt, nullptr);
}

unsigned lane_id() {
    return this_worker->running->linear % 32;
}

unsigned active_lanes() {
    worker &w = *this_worker;
    const unsigned warp = w.running->linear / 32;
    unsigned mask = 0;
    for (unsigned lane = 0; lane < 32; lane++) {
        unsigned linear = warp * 32 + lane;
        if (linear < w.n_threads && w.fibers[linear]->state != fiber_state::done)
            mask |= 1u << lane;
    }
    return mask;
}

unsigned char *dynamic_shared(size_t *n_bytes) {
    worker &w = *this_worker;
    *n_bytes = w.shared_bytes;
    return w.shared;
}

void block_barrier(const char *file, int line) {
    worker &w = *this_worker;
    if (w.barrier_count == 0) {
        w.barrier_file = file;
        w.barrier_line = line;
    } else if (line != w.barrier_line || strcmp(file, w.barrier_file) != 0) {
        fault("__syncthreads at %s:%d while %u thread(s) wait at %s:%d", file, line,
              w.barrier_count, w.barrier_file, w.barrier_line);
    }
    if (++w.barrier_count < w.n_threads) {
        w.running->state = fiber_state::wait_block;
        yield_to_scheduler();
        return;
    }
    w.barrier_count = 0; /* the last arrival releases everyone and runs on */
    for (unsigned i = 0; i < w.n_threads; i++)
        if (w.fibers[i]->state == fiber_state::wait_block)
            w.fibers[i]->state = fiber_state::runnable;
}

const uint64_t *warp_exchange(unsigned mask, uint64_t bits, const char *what) {
    worker &w = *this_worker;
    fiber &self = *w.running;
    const unsigned warp = self.linear / 32, lane = self.linear % 32;
    warp_state &ws = w.warps[warp];
    if (!(mask >> lane & 1u))
        fault("%s: the calling lane %u is not in mask 0x%08x", what, lane, mask);
    if (mask & ~ws.existing)
        fault("%s: mask 0x%08x names lanes that do not exist (warp %u has lanes 0x%08x)", what,
              mask, warp, ws.existing);

    const unsigned parity = ws.count[lane] & 1u;
    ws.count[lane]++;
    ws.words[parity][lane] = bits;
    ws.mask_of[lane] = mask;
    ws.what_of[lane] = what;
    ws.arrived |= 1u << lane;

    if ((ws.arrived & mask) == mask) {
        for (unsigned l = 0; l < 32; l++) {
            if (!(mask >> l & 1u)) continue;
            if (ws.mask_of[l] != mask)
                fault("%s: lanes disagree on the mask: lane %u passed 0x%08x, lane %u 0x%08x", what,
                      lane, mask, l, ws.mask_of[l]);
            if (strcmp(ws.what_of[l], what) != 0)
                fault("lanes meet at different warp operations: lane %u at %s, lane %u at %s", lane,
                      what, l, ws.what_of[l]);
            if (ws.count[l] != ws.count[lane])
                fault("%s: lane %u is at its warp exchange #%u, lane %u at #%u", what, lane,
                      ws.count[lane], l, ws.count[l]);
        }
        ws.arrived &= ~mask;
        for (unsigned l = 0; l < 32; l++)
            if ((mask >> l & 1u) && l != lane)
                w.fibers[warp * 32 + l]->state = fiber_state::runnable;
    } else {
        self.state = fiber_state::wait_warp;
        yield_to_scheduler();
    }
    /* Lanes outside the mask read as all-ones: NaN as a float, -1 as an integer. */
    for (unsigned l = 0; l < 32; l++)
        self.view[l] = (mask >> l & 1u) ? ws.words[parity][l] : ~0ull;
    return self.view;
}

/* Why a block cannot go on: the barrier or warp exchange that some thread never reaches. */
static std::string describe_stall(const worker &w) {
    unsigned done = 0, at_block = 0, at_warp = 0;
    for (unsigned i = 0; i < w.n_threads; i++) {
        fiber_state s = w.fibers[i]->state;
        done += s == fiber_state::done;
        at_block += s == fiber_state::wait_block;
        at_warp += s == fiber_state::wait_warp;
    }
    std::string text = format("cudaemu: %s block (%u,%u,%u): stuck:", w.current->spec->kernel,
                              block_idx.x, block_idx.y, block_idx.z);
    if (at_block > 0)
        text += format(" %u of %u threads wait at __syncthreads (%s:%d), %u exited, %u wait at a "
                       "warp operation",
                       at_block, w.n_threads, w.barrier_file, w.barrier_line, done, at_warp);
    for (size_t warp = 0; warp < w.warps.size(); warp++) {
        const warp_state &ws = w.warps[warp];
        if (ws.arrived == 0) continue;
        unsigned first = (unsigned)__builtin_ctz(ws.arrived);
        unsigned exited = 0;
        for (unsigned l = 0; l < 32; l++) {
            unsigned linear = (unsigned)warp * 32 + l;
            if (linear < w.n_threads && w.fibers[linear]->state == fiber_state::done)
                exited |= 1u << l;
        }
        text += format("%s warp %zu: lanes 0x%08x wait at %s with mask 0x%08x (exited lanes "
                       "0x%08x)",
                       at_block > 0 ? ";" : "", warp, ws.arrived, ws.what_of[first],
                       ws.mask_of[first], exited);
        break;
    }
    return text;
}

/* CUDAEMU_ORDER=reverse resumes a block's threads from the last to the first. Correct kernels
 * do not care; one that reads shared memory another thread writes without a barrier between
 * usually works in one order and fails in the other. */
static bool reverse_order() {
    static const bool reverse = [] {
        const char *env = getenv("CUDAEMU_ORDER");
        return env != nullptr && strcmp(env, "reverse") == 0;
    }();
    return reverse;
}

/* Runs one block to completion; false (with w.fault_text) when it faults or gets stuck. */
static bool run_block(worker &w, const job &j, uint3 block) {
    const launch_spec &spec = *j.spec;
    block_idx = block;
    block_dim = spec.block;
    grid_dim = spec.grid;
    w.current = &j;
    w.n_threads = j.n_threads;
    w.n_done = 0;
    w.barrier_count = 0;
    w.faulted = false;
    while (w.fibers.size() < j.n_threads)
        w.fibers.push_back(new_fiber());

    const unsigned n_warps = (j.n_threads + 31) / 32;
    w.warps.assign(n_warps, warp_state());
    for (unsigned warp = 0; warp < n_warps; warp++) {
        unsigned lanes = j.n_threads - warp * 32;
        w.warps[warp].existing = lanes >= 32 ? 0xffffffffu : (1u << lanes) - 1u;
    }

    /* Shared memory starts as NaN bytes: a kernel that reads before writing sees garbage, as on
     * a GPU, instead of whatever the previous block left. */
    w.shared_bytes = spec.shared_bytes;
    if (w.shared_capacity < spec.shared_bytes) {
        free(w.shared);
        if (posix_memalign(reinterpret_cast<void **>(&w.shared), 256, spec.shared_bytes) != 0) {
            fprintf(stderr, "cudaemu: out of memory for %zu bytes of shared memory\n",
                    spec.shared_bytes);
            abort();
        }
        w.shared_capacity = spec.shared_bytes;
    }
    if (spec.shared_bytes) memset(w.shared, kPoisonByte, spec.shared_bytes);

    const unsigned dx = spec.block.x, dy = spec.block.y;
    for (unsigned i = 0; i < j.n_threads; i++) {
        fiber &f = *w.fibers[i];
        f.linear = i;
        f.tid = make_uint3(i % dx, i / dx % dy, i / (dx * dy));
        f.state = fiber_state::runnable;
    }

    bool ok = true;
    const bool reverse = reverse_order();
    while (ok && w.n_done < j.n_threads) {
        bool progressed = false;
        for (unsigned step = 0; step < j.n_threads && !w.faulted; step++) {
            fiber &f = *w.fibers[reverse ? j.n_threads - 1 - step : step];
            if (f.state != fiber_state::runnable) continue;
            w.running = &f;
            thread_idx = f.tid;
            switch_context(w.scheduler, f.ctx);
            progressed = true;
        }
        w.running = nullptr;
        if (w.faulted) {
            ok = false;
        } else if (!progressed && w.n_done < j.n_threads) {
            w.fault_text = describe_stall(w);
            ok = false;
        }
    }
    /* Fibers abandoned inside the kernel start afresh next time. */
    for (unsigned i = 0; i < j.n_threads; i++) {
        fiber &f = *w.fibers[i];
        if (f.in_kernel) {
            start_context(f.ctx, f.stack, kFiberStackBytes, fiber_entry);
            f.in_kernel = false;
        }
        f.state = fiber_state::idle;
    }
    return ok;
}

/* Takes blocks from the job until none are left or one fails. */
static void work_on(job &j) {
    static thread_local worker *mine = nullptr;
    if (mine == nullptr) { /* per host thread, kept until exit */
        mine = new worker();
        install_fault_handler(*mine);
    }
    this_worker = mine;
    const dim3 grid = j.spec->grid;
    while (!j.failed.load()) {
        uint64_t b = j.next_block.fetch_add(1);
        if (b >= j.n_blocks) break;
        uint3 block = make_uint3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                                 (unsigned)(b / ((uint64_t)grid.x * grid.y)));
        if (!run_block(*mine, j, block)) {
            std::lock_guard<std::mutex> guard(j.fault_lock);
            if (!j.failed.exchange(true)) j.fault_text = mine->fault_text;
        }
    }
    this_worker = nullptr;
}

/* Host threads that run blocks next to the launching thread. CUDAEMU_WORKERS sets how many
 * threads run blocks in all (default: the number of cores, at most 16). */
class worker_pool {
  public:
    worker_pool() {
        unsigned n = std::thread::hardware_concurrency();
        const char *env = getenv("CUDAEMU_WORKERS");
        if (env != nullptr && atoi(env) > 0) n = (unsigned)atoi(env);
        if (n < 1) n = 1;
        if (n > 16) n = 16;
        for (unsigned i = 1; i < n; i++)
            threads_.emplace_back([this] { loop(); });
    }

    void run(job &j) {
        {
            std::lock_guard<std::mutex> guard(lock_);
            job_ = &j;
            generation_++;
            busy_ = (unsigned)threads_.size();
        }
        start_.notify_all();
        work_on(j);
        std::unique_lock<std::mutex> guard(lock_);
        done_.wait(guard, [this] { return busy_ == 0; });
        job_ = nullptr;
    }

  private:
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            job *j;
            {
                std::unique_lock<std::mutex> guard(lock_);
                start_.wait(guard, [&] { return generation_ != seen; });
                seen = generation_;
                j = job_;
            }
            work_on(*j);
            std::lock_guard<std::mutex> guard(lock_);
            if (--busy_ == 0) done_.notify_one();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex lock_;
    std::condition_variable start_, done_;
    job *job_ = nullptr;
    uint64_t generation_ = 0;
    unsigned busy_ = 0;
};

static worker_pool &pool() {
    static worker_pool *p = new worker_pool; /* its threads live until exit */
    return *p;
}

// ---------------------------------------------------------------------------------------------
// Launch

struct stream_registry {
    std::mutex lock;
    std::set<cudaStream_t> streams;
    std::map<const void *, size_t> shared_limit;  /* cudaFuncAttributeMaxDynamicSharedMemorySize */
    std::map<const void *, size_t> static_shared; /* declare_static_shared */
};

static stream_registry &streams() {
    static stream_registry *r = new stream_registry;
    return *r;
}

/* The function's static shared memory and its dynamic limit; r.lock held. */
static size_t static_shared_of(stream_registry &r, const void *function) {
    auto it = r.static_shared.find(function);
    return it == r.static_shared.end() ? 0 : it->second;
}

static size_t dynamic_limit_of(stream_registry &r, const void *function) {
    auto it = r.shared_limit.find(function);
    if (it != r.shared_limit.end()) return it->second;
    const size_t fixed = static_shared_of(r, function);
    return fixed < kDefaultSharedLimit ? kDefaultSharedLimit - fixed : 0;
}

void declare_static_shared(const void *function, size_t n_bytes) {
    stream_registry &r = streams();
    std::lock_guard<std::mutex> guard(r.lock);
    r.static_shared[function] = n_bytes;
}

static bool valid_stream(cudaStream_t s);
bool stream_is_valid(cudaStream_t s) {
    return valid_stream(s);
}

static bool valid_stream(cudaStream_t s) {
    if (s == nullptr) return true;
    stream_registry &r = streams();
    std::lock_guard<std::mutex> guard(r.lock);
    return r.streams.count(s) != 0;
}

bool check_kernel_pointer(const launch_spec &spec, int index, const void *p) {
    if (p == nullptr || locate(p, 0) == where::device) return true;
    set_error(cudaErrorInvalidValue,
              format("cudaemu: launch of %s: argument %d (%p) is not device memory", spec.kernel,
                     index, p));
    return false;
}

void run_grid(const launch_spec &spec, void (*body)(void *), void *context) {
    const dim3 b = spec.block, g = spec.grid;
    const uint64_t n_threads = (uint64_t)b.x * b.y * b.z;
    if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
        n_threads > kMaxBlockThreads || g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu ||
        g.y > 65535 || g.z > 65535) {
        set_error(cudaErrorInvalidConfiguration,
                  format("cudaemu: launch of %s: invalid configuration grid (%u,%u,%u) block "
                         "(%u,%u,%u)",
                         spec.kernel, g.x, g.y, g.z, b.x, b.y, b.z));
        return;
    }
    size_t limit, fixed;
    {
        stream_registry &r = streams();
        std::lock_guard<std::mutex> guard(r.lock);
        limit = dynamic_limit_of(r, spec.function);
        fixed = static_shared_of(r, spec.function);
    }
    if (spec.shared_bytes > limit) {
        set_error(cudaErrorInvalidValue,
                  format("cudaemu: launch of %s: %zu bytes of dynamic shared memory exceed the "
                         "kernel's limit of %zu (beside %zu static; cudaFuncSetAttribute raises "
                         "it)",
                         spec.kernel, spec.shared_bytes, limit, fixed));
        return;
    }
    if (!valid_stream(spec.stream)) {
        set_error(cudaErrorInvalidResourceHandle,
                  format("cudaemu: launch of %s: unknown stream %p", spec.kernel,
                         static_cast<void *>(spec.stream)));
        return;
    }
    job j;
    j.spec = &spec;
    j.body = body;
    j.context = context;
    j.n_threads = (unsigned)n_threads;
    j.n_blocks = (uint64_t)g.x * g.y * g.z;
    pool().run(j);
    if (j.failed.load()) set_error(cudaErrorLaunchFailure, j.fault_text);
}

} // namespace cudaemu

// ---------------------------------------------------------------------------------------------
// The runtime API (renamed cudaemu_* by cudaemu.h, declared by the real headers)

using namespace cudaemu;

static const char *error_name(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
        return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
        return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchFailure:
        return "cudaErrorLaunchFailure";
    case cudaErrorInvalidDevicePointer:
        return "cudaErrorInvalidDevicePointer";
    default:
        return "cudaErrorUnknown";
    }
}

static const char *error_string(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorInvalidDevice:
        return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
        return "invalid resource handle";
    case cudaErrorLaunchFailure:
        return "unspecified launch failure";
    case cudaErrorInvalidDevicePointer:
        return "invalid device pointer";
    default:
        return "unknown error";
    }
}

extern "C" {

cudaError_t cudaemu_cudaGetDeviceCount(int *count) {
    if (count == nullptr) return cudaErrorInvalidValue;
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaemu_cudaSetDevice(int device) {
    if (device != 0) {
        set_error(cudaErrorInvalidDevice,
                  format("cudaemu: cudaSetDevice(%d): only device 0 exists", device));
        return cudaErrorInvalidDevice;
    }
    return cudaSuccess;
}

cudaError_t cudaemu_cudaGetDevice(int *device) {
    if (device == nullptr) return cudaErrorInvalidValue;
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaemu_cudaDeviceSynchronize(void) {
    return cudaSuccess;
}

cudaError_t cudaemu_cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (value == nullptr || device != 0) return cudaErrorInvalidValue;
    switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
        *value = (int)kOptInSharedLimit;
        break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
        *value = (int)kDefaultSharedLimit;
        break;
    case cudaDevAttrMultiProcessorCount:
        *value = 132;
        break;
    case cudaDevAttrWarpSize:
        *value = 32;
        break;
    case cudaDevAttrMaxThreadsPerBlock:
        *value = (int)kMaxBlockThreads;
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

/* The executor's device: an H100's compute capability and size unless CUDAEMU_COMPUTE_CAPABILITY
 * ("7.5", say) names another, so the tests can see an old GPU refused. */
cudaError_t cudaemu_cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    if (prop == nullptr || device != 0) return cudaErrorInvalidValue;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cudaemu host executor");
    prop->major = 9;
    prop->minor = 0;
    const char *cc = getenv("CUDAEMU_COMPUTE_CAPABILITY");
    if (cc && sscanf(cc, "%d.%d", &prop->major, &prop->minor) != 2) return cudaErrorInvalidValue;
    prop->multiProcessorCount = 132;
    prop->totalGlobalMem = (size_t)80 << 30;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = (int)kMaxBlockThreads;
    prop->sharedMemPerBlock = kDefaultSharedLimit;
    prop->sharedMemPerBlockOptin = kOptInSharedLimit;
    return cudaSuccess;
}

cudaError_t cudaemu_cudaDriverGetVersion(int *version) {
    if (version == nullptr) return cudaErrorInvalidValue;
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaemu_cudaRuntimeGetVersion(int *version) {
    if (version == nullptr) return cudaErrorInvalidValue;
    *version = CUDART_VERSION;
    return cudaSuccess;
}

/* Fresh device memory is NaN bytes, so a kernel that reads what nobody wrote is caught. */
cudaError_t cudaemu_cudaMalloc(void **dev_ptr, size_t size) {
    if (dev_ptr == nullptr) return cudaErrorInvalidValue;
    *dev_ptr = nullptr;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t usable = (size + 255) / 256 * 256;
    const size_t body = (usable + page - 1) / page * page;
    const size_t map_bytes = body + 2 * page;
    void *map = mmap(nullptr, map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return cudaErrorMemoryAllocation;
    char *first_page = static_cast<char *>(map) + page;
    if (body > 0 && mprotect(first_page, body, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, map_bytes);
        return cudaErrorMemoryAllocation;
    }
    char *p = first_page + (body - usable); /* ends at the trailing guard page */
    memset(p, kPoisonByte, usable);
    memory_registry &r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    r.blocks[reinterpret_cast<uintptr_t>(p)] =
        device_block{size, static_cast<char *>(map), map_bytes};
    *dev_ptr = p;
    return cudaSuccess;
}

cudaError_t cudaemu_cudaFree(void *dev_ptr) {
    if (dev_ptr == nullptr) return cudaSuccess;
    device_block block;
    {
        memory_registry &r = registry();
        std::lock_guard<std::mutex> guard(r.lock);
        auto it = r.blocks.find(reinterpret_cast<uintptr_t>(dev_ptr));
        if (it == r.blocks.end()) {
            set_error(cudaErrorInvalidDevicePointer,
                      format("cudaemu: cudaFree(%p): not the start of a device block", dev_ptr));
            return cudaErrorInvalidDevicePointer;
        }
        block = it->second;
        r.blocks.erase(it);
    }
    munmap(block.map, block.map_bytes);
    return cudaSuccess;
}

/* The copy's direction must match where its pointers really are. */
static cudaError_t checked_copy(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                                cudaStream_t stream, const char *api) {
    if (count == 0) return cudaSuccess;
    if (!valid_stream(stream)) return cudaErrorInvalidResourceHandle;
    const where d = locate(dst, count), s = locate(src, count);
    bool ok;
    switch (kind) {
    case cudaMemcpyHostToDevice:
        ok = d == where::device && s == where::host;
        break;
    case cudaMemcpyDeviceToHost:
        ok = d == where::host && s == where::device;
        break;
    case cudaMemcpyDeviceToDevice:
        ok = d == where::device && s == where::device;
        break;
    case cudaMemcpyHostToHost:
        ok = d == where::host && s == where::host;
        break;
    case cudaMemcpyDefault:
        ok = d != where::overrun && s != where::overrun;
        break;
    default:
        ok = false;
    }
    if (!ok) {
        set_error(cudaErrorInvalidValue,
                  format("cudaemu: %s of %zu bytes, kind %d: destination %p is %s, source %p is "
                         "%s",
                         api, count, (int)kind, dst, where_name(d), src, where_name(s)));
        return cudaErrorInvalidValue;
    }
    memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t cudaemu_cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
    return checked_copy(dst, src, count, kind, nullptr, "cudaMemcpy");
}

cudaError_t cudaemu_cudaMemcpyAsync(void *dst, const void *src, size_t count,
                                    enum cudaMemcpyKind kind, cudaStream_t stream) {
    return checked_copy(dst, src, count, kind, stream, "cudaMemcpyAsync");
}

static cudaError_t checked_memset(void *dev_ptr, int value, size_t count, cudaStream_t stream,
                                  const char *api) {
    if (count == 0) return cudaSuccess;
    if (!valid_stream(stream)) return cudaErrorInvalidResourceHandle;
    where w = locate(dev_ptr, count);
    if (w != where::device) {
        set_error(cudaErrorInvalidValue,
                  format("cudaemu: %s of %zu bytes at %p: %s", api, count, dev_ptr, where_name(w)));
        return cudaErrorInvalidValue;
    }
    memset(dev_ptr, value, count);
    return cudaSuccess;
}

cudaError_t cudaemu_cudaMemset(void *dev_ptr, int value, size_t count) {
    return checked_memset(dev_ptr, value, count, nullptr, "cudaMemset");
}

cudaError_t cudaemu_cudaMemsetAsync(void *dev_ptr, int value, size_t count, cudaStream_t stream) {
    return checked_memset(dev_ptr, value, count, stream, "cudaMemsetAsync");
}

cudaError_t cudaemu_cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    if (stream == nullptr) return cudaErrorInvalidValue;
    cudaStream_t s = new CUstream_st{flags};
    stream_registry &r = streams();
    std::lock_guard<std::mutex> guard(r.lock);
    r.streams.insert(s);
    *stream = s;
    return cudaSuccess;
}

cudaError_t cudaemu_cudaStreamCreate(cudaStream_t *stream) {
    return cudaemu_cudaStreamCreateWithFlags(stream, 0);
}

cudaError_t cudaemu_cudaStreamDestroy(cudaStream_t stream) {
    stream_registry &r = streams();
    std::lock_guard<std::mutex> guard(r.lock);
    if (stream == nullptr || r.streams.erase(stream) == 0) return cudaErrorInvalidResourceHandle;
    delete stream;
    return cudaSuccess;
}

/* Everything ran when it was issued: there is nothing to wait for. */
cudaError_t cudaemu_cudaStreamSynchronize(cudaStream_t stream) {
    return valid_stream(stream) ? cudaSuccess : cudaErrorInvalidResourceHandle;
}

cudaError_t cudaemu_cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaemu_cudaPeekAtLastError(void) {
    return last_error;
}

const char *cudaemu_cudaGetErrorName(cudaError_t error) {
    return error_name(error);
}

/* The runtime's text, plus what the executor found when this was the last error it raised. */
const char *cudaemu_cudaGetErrorString(cudaError_t error) {
    if (error != cudaSuccess && error == detail_code && !detail_text.empty()) {
        error_text = std::string(error_string(error)) + " [" + detail_text + "]";
        return error_text.c_str();
    }
    return error_string(error);
}

cudaError_t cudaemu_cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (func == nullptr) return cudaErrorInvalidValue;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    stream_registry &r = streams();
    std::lock_guard<std::mutex> guard(r.lock);
    const size_t fixed = static_shared_of(r, func);
    if (value < 0 || (size_t)value + fixed > kOptInSharedLimit) {
        set_error(cudaErrorInvalidValue,
                  format("cudaemu: cudaFuncSetAttribute: %d bytes of dynamic shared memory and "
                         "%zu static exceed the device's %zu",
                         value, fixed, kOptInSharedLimit));
        return cudaErrorInvalidValue;
    }
    r.shared_limit[func] = (size_t)value;
    return cudaSuccess;
}

/* What a kernel's attributes say of shared memory (the rest is what an sm_90 build would give a
 * small kernel: no registers or local memory are modelled). */
cudaError_t cudaemu_cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func) {
    if (attr == nullptr || func == nullptr) return cudaErrorInvalidValue;
    memset(attr, 0, sizeof *attr);
    stream_registry &r = streams();
    std::lock_guard<std::mutex> guard(r.lock);
    attr->sharedSizeBytes = static_shared_of(r, func);
    attr->maxDynamicSharedSizeBytes = (int)dynamic_limit_of(r, func);
    attr->maxThreadsPerBlock = (int)kMaxBlockThreads;
    attr->ptxVersion = 90;
    attr->binaryVersion = 90;
    attr->preferredShmemCarveout = -1;
    return cudaSuccess;
}

} // extern "C"
