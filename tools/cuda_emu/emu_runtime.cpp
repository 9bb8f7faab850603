// The CUDA emulator's run time and fake driver (libcuda.so.1), see README.md.
//
// - Kernels: each family's source, compiled as C++ with emu_cuda.h, registers its kernels by
//   name (EMU_REGISTER); cuModuleGetFunction finds them by name, whatever image was "loaded".
// - A launch runs the grid's blocks one after another; a block's threads are fibers on the
//   calling thread, resumed in a shuffled order, switching at barriers. On x86-64 a fiber switch
//   is a few instructions (emu_switch below); glibc's swapcontext makes a sigprocmask system
//   call on every switch, which took nine tenths of the emulator's time. Elsewhere ucontext. A
//   barrier that not every live thread of its scope reaches is reported as a deadlock, with
//   the kernel's name, and aborts.
// - Memory is host memory: every allocation is its own mapping, ending against an inaccessible
//   page (and starting after one), so a kernel that reads or writes past a buffer's end
//   crashes there; the fault handler names the kernel running.
// - Streams are synchronous: every call completes before it returns.
#include "emu_cuda.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#include <vector>

namespace emu {

uint3 block_idx, block_dim, grid_dim;

static std::map<std::string, Tramp>& registry() {
    static std::map<std::string, Tramp> r;
    return r;
}

void register_kernel(const char* name, Tramp t) { registry()[name] = t; }

// Launches run one at a time (the fibers and the scheduler are global).
static std::mutex launch_lock;

enum Wait { NONE = 0, BLOCK = 1, WARP = 2 };

static void entry();

#if defined(__x86_64__)
// A suspended fiber is its stack pointer: emu_switch(save, to) pushes the System V callee-saved
// registers, stores the stack pointer in *save, loads `to` and pops the same from there. The
// SSE and x87 control words are left alone, as the signal mask is: no kernel changes them, so
// every fiber runs with the launching thread's.
extern "C" void emu_switch(void** save, void* to);
asm(R"(
    .text
    .p2align 4
    .hidden emu_switch
    .type emu_switch,@function
emu_switch:
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
    .size emu_switch,.-emu_switch
)");

struct Context {
    void* sp = nullptr;
};
// Lays out, at the top of `stack`, what emu_switch pops when it first switches to the fiber:
// zeroed registers and entry() as the return address, so that entry() starts with the stack
// aligned as after a call.
static void make_context(Context& c, char* stack, size_t size) {
    auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
    auto* w = reinterpret_cast<uint64_t*>(top);
    *--w = 0;                                        // entry()'s return address: it never returns
    *--w = reinterpret_cast<uint64_t>(&entry);       // where emu_switch's ret goes
    for (int r = 0; r < 6; ++r) *--w = 0;            // rbp, rbx, r12..r15
    c.sp = w;
}
static void switch_context(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc;
};
static void make_context(Context& c, char* stack, size_t size) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
static void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

struct Fiber {
    ThreadState state;
    Context ctx;
    char* stack = nullptr;  // from `spare_stacks` while the thread runs
    bool done = false;
    Wait wait = NONE;
    unsigned long long word = 0;  // published by exchange()
};

static const size_t STACK = 256 * 1024;
static std::vector<Fiber> fibers;
// Stacks of finished threads, the last freed on top: a thread that starts takes the one still in
// the cache, so a block of threads without barriers runs on one stack.
static std::vector<char*> spare_stacks;
static Fiber* cur = nullptr;
static Context scheduler;
static Tramp running = nullptr;
static void** running_params = nullptr;
static const char* running_name = "";
static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;

ThreadState* current() { return &cur->state; }

unsigned lane() {
    unsigned linear = cur->state.tid.x + block_dim.x * (cur->state.tid.y + block_dim.y * cur->state.tid.z);
    return linear & 31;
}

static void park(Wait w) {
    cur->wait = w;
    switch_context(cur->ctx, scheduler);
}

void sync_block() { park(BLOCK); }
void sync_warp() { park(WARP); }

unsigned long long exchange(unsigned long long v, int src) {
    cur->word = v;
    sync_warp();
    size_t self = cur - fibers.data();
    size_t base = self - lane();
    unsigned long long r = (src >= 0 && base + src < fibers.size()) ? fibers[base + src].word : v;
    sync_warp();
    return r;
}

static void entry() {
    running(running_params);
    cur->done = true;
    switch_context(cur->ctx, scheduler);
    std::abort();  // a finished fiber is never resumed
}

static unsigned long long next_random() {
    unsigned long long z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void deadlock(size_t n) {
    std::fprintf(stderr, "cuda emulator: kernel %s deadlocks in block (%u, %u, %u):", running_name, block_idx.x, block_idx.y,
                 block_idx.z);
    for (size_t i = 0; i < n; ++i) {
        if (!fibers[i].done) std::fprintf(stderr, " t%zu:%s", i, fibers[i].wait == BLOCK ? "block" : "warp");
    }
    std::fprintf(stderr, "\n");
    std::abort();
}

// Runs one block of `n` threads to completion.
static void run_block(size_t n) {
    if (fibers.size() < n) fibers.resize(n);
    for (size_t i = 0; i < n; ++i) {
        Fiber& f = fibers[i];
        f.done = false;
        f.wait = NONE;
        f.state.tid = {(unsigned)(i % block_dim.x), (unsigned)((i / block_dim.x) % block_dim.y),
                       (unsigned)(i / (block_dim.x * block_dim.y))};
    }
    static std::vector<size_t> order;
    order.resize(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    for (;;) {
        // A shuffled pass over the runnable threads.
        for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[next_random() % i]);
        for (size_t k = 0; k < n; ++k) {
            Fiber& f = fibers[order[k]];
            if (f.done || f.wait != NONE) continue;
            if (!f.stack) {
                if (spare_stacks.empty()) {
                    // Stack tops at different offsets within a page (of 64 lines), so that the
                    // top frames of a block's threads do not all fall in one cache set.
                    static size_t made = 0;
                    char* base = static_cast<char*>(std::malloc(STACK + 4096));
                    f.stack = base + (made++ * 17 % 64) * 64;
                } else {
                    f.stack = spare_stacks.back();
                    spare_stacks.pop_back();
                }
                make_context(f.ctx, f.stack, STACK);
            }
            cur = &f;
            switch_context(scheduler, f.ctx);
            if (f.done) {
                spare_stacks.push_back(f.stack);
                f.stack = nullptr;
            }
        }
        // Release the barriers every live thread of their scope has reached.
        size_t live = 0, at_block = 0;
        bool released = false;
        for (size_t w = 0; w < n; w += 32) {
            size_t end = w + 32 < n ? w + 32 : n, wlive = 0, wat = 0;
            for (size_t i = w; i < end; ++i) {
                if (fibers[i].done) continue;
                ++wlive;
                if (fibers[i].wait == WARP) ++wat;
                if (fibers[i].wait == BLOCK) ++at_block;
            }
            live += wlive;
            if (wlive > 0 && wat == wlive) {
                for (size_t i = w; i < end; ++i) fibers[i].wait = NONE;
                released = true;
            }
        }
        if (live == 0) return;
        if (!released && at_block == live) {
            for (size_t i = 0; i < n; ++i) fibers[i].wait = NONE;
            released = true;
        }
        if (!released) deadlock(n);
    }
}

static void launch(Tramp t, const char* name, uint3 grid, uint3 block, void** params) {
    std::lock_guard<std::mutex> g(launch_lock);
    running = t;
    running_params = params;
    running_name = name;
    grid_dim = grid;
    block_dim = block;
    size_t n = (size_t)block.x * block.y * block.z;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                block_idx = {x, y, z};
                run_block(n);
            }
    running_name = "";
}

// ---- memory -------------------------------------------------------------------------------

struct Mapping {
    void* base;
    size_t len;
};
static std::map<unsigned long long, Mapping> mappings;
static std::mutex mem_lock;
static size_t page = 4096;

static unsigned long long alloc(size_t bytes) {
    size_t body = (bytes + page - 1) / page * page;
    size_t len = body + 2 * page;
    void* base = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 0;
    mprotect(static_cast<char*>(base) + page, body, PROT_READ | PROT_WRITE);
    // The buffer ends at the guard page (aligned to 8 bytes: sizes are multiples of 4 or 8).
    unsigned long long ptr = (unsigned long long)(static_cast<char*>(base) + page + body - ((bytes + 7) / 8 * 8));
    std::lock_guard<std::mutex> g(mem_lock);
    mappings[ptr] = {base, len};
    return ptr;
}

static bool release(unsigned long long ptr) {
    std::lock_guard<std::mutex> g(mem_lock);
    auto it = mappings.find(ptr);
    if (it == mappings.end()) return false;
    munmap(it->second.base, it->second.len);
    mappings.erase(it);
    return true;
}

static void on_fault(int sig) {
    const char msg[] = "cuda emulator: memory fault";
    (void)!write(2, msg, sizeof msg - 1);
    if (*running_name) {
        (void)!write(2, " in kernel ", 11);
        (void)!write(2, running_name, std::strlen(running_name));
    }
    (void)!write(2, "\n", 1);
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

static struct Init {
    Init() {
        page = (size_t)sysconf(_SC_PAGESIZE);
        // The fibers run on their own stacks: the handler needs one of its own.
        static char alt[64 * 1024];
        stack_t ss;
        ss.ss_sp = alt;
        ss.ss_size = sizeof alt;
        ss.ss_flags = 0;
        sigaltstack(&ss, nullptr);
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fault;
        sa.sa_flags = SA_ONSTACK;
        sigaction(SIGSEGV, &sa, nullptr);
        sigaction(SIGBUS, &sa, nullptr);
    }
} init;

}  // namespace emu

// ---- the driver API -----------------------------------------------------------------------

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
enum { OK = 0, ERR_INVALID_VALUE = 1, ERR_OUT_OF_MEMORY = 2, ERR_NOT_FOUND = 500, ERR_INVALID_HANDLE = 400 };

struct Function {
    emu::Tramp tramp;
    std::string name;
};
static int context_token, stream_token, module_token;
static void* current_ctx = nullptr;
static std::map<std::string, Function*> functions;

// Only the driver API is exported: the library is opened RTLD_GLOBAL, and its C++ symbols must
// not interpose on NVRTC's.
#pragma GCC visibility push(default)
extern "C" {
CUresult cuInit(unsigned) { return OK; }
// NVRTC looks this up in a loaded libcuda.so.1 (and crashes when it is missing): no tables.
CUresult cuGetExportTable(const void** table, const void*) {
    *table = nullptr;
    return 801;  // CUDA_ERROR_NOT_SUPPORTED
}
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return OK;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return OK;
}
CUresult cuDeviceGet(int* d, int ordinal) {
    if (ordinal != 0) return ERR_INVALID_VALUE;
    *d = 0;
    return OK;
}
CUresult cuDeviceGetName(char* name, int len, int) {
    std::snprintf(name, (size_t)len, "crema CUDA emulator");
    return OK;
}
CUresult cuDeviceGetUuid(void* uuid, int) {
    std::memset(uuid, 0, 16);
    return OK;
}
CUresult cuDeviceGetUuid_v2(void* uuid, int d) { return cuDeviceGetUuid(uuid, d); }
CUresult cuDeviceTotalMem_v2(size_t* bytes, int) {
    *bytes = (size_t)16 << 30;
    return OK;
}
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
    switch (attr) {
    case 75: *v = 9; break;   // compute capability major
    case 76: *v = 0; break;   // minor
    case 16: *v = 4; break;   // multiprocessors (few: grid-stride loops take several turns)
    case 115: *v = 0; break;  // memory pools: no (synchronous allocation)
    case 1: *v = 1024; break; // max threads per block
    case 10: *v = 32; break;  // warp size
    default: *v = 0; break;
    }
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) {
    *ctx = &context_token;
    return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(int) { return OK; }
CUresult cuDevicePrimaryCtxRelease(int) { return OK; }
CUresult cuCtxSetCurrent(void* ctx) {
    current_ctx = ctx;
    return OK;
}
CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = current_ctx;
    return OK;
}
CUresult cuCtxGetDevice(int* d) {
    *d = 0;
    return OK;
}
CUresult cuCtxSynchronize() { return OK; }
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    *free_bytes = (size_t)8 << 30;
    *total = (size_t)16 << 30;
    return OK;
}
CUresult cuStreamCreate(void** s, unsigned) {
    *s = &stream_token;
    return OK;
}
CUresult cuStreamCreateWithPriority(void** s, unsigned, int) { return cuStreamCreate(s, 0); }
CUresult cuStreamDestroy_v2(void*) { return OK; }
CUresult cuStreamSynchronize(void*) { return OK; }
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    // EMU_CUDA_ALLOC_LIMIT=N: an allocation of more than N bytes fails as out of memory (a
    // nearly full device, for tests of what crema does then).
    static const size_t limit = [] {
        const char* v = getenv("EMU_CUDA_ALLOC_LIMIT");
        return v && *v ? (size_t)strtoull(v, nullptr, 10) : (size_t)-1;
    }();
    if (bytes > limit) {
        *p = 0;
        return ERR_OUT_OF_MEMORY;
    }
    *p = emu::alloc(bytes);
    return *p ? OK : ERR_OUT_OF_MEMORY;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void*) { return cuMemAlloc_v2(p, bytes); }
CUresult cuMemFree_v2(CUdeviceptr p) { return emu::release(p) ? OK : ERR_INVALID_VALUE; }
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) {
    std::memset((void*)p, v, n);
    return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return cuMemsetD8Async(p, v, n, nullptr); }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void*) {
    std::memcpy((void*)dst, src, n);
    return OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr); }
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void*) {
    std::memcpy(dst, (const void*)src, n);
    return OK;
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr); }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void*) {
    std::memmove((void*)dst, (const void*)src, n);
    return OK;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr); }
CUresult cuModuleLoadData(void** m, const void*) {
    *m = &module_token;
    return OK;
}
CUresult cuModuleUnload(void*) { return OK; }
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    auto it = emu::registry().find(name);
    if (it == emu::registry().end()) return ERR_NOT_FOUND;
    Function*& fn = functions[name];
    if (!fn) fn = new Function{it->second, name};
    *f = fn;
    return OK;
}
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned,
                        void*, void** params, void**) {
    Function* fn = static_cast<Function*>(f);
    if (!fn || bx * by * bz == 0 || bx * by * bz > 1024) return ERR_INVALID_VALUE;
    emu::launch(fn->tramp, fn->name.c_str(), {gx, gy, gz}, {bx, by, bz}, params);
    return OK;
}
// Events. Streams are synchronous, so work is done when it is queued, on the thread that queues
// it: an event records the clock of the thread that records it. That clock is virtual: it moves
// only by what the cuDNN stand-in says each of its convolutions would take (cuEmuClockAdvance),
// the same on every run, so that a search timing cuDNN's algorithms chooses reproducibly.
static thread_local double clock_ms = 0.0;
#define MAGIC_EVENT 0x45564e54u
struct Event {
    unsigned magic;
    bool recorded;
    double at;
};
static Event* as_event(void* e) {
    Event* ev = static_cast<Event*>(e);
    return ev && ev->magic == MAGIC_EVENT ? ev : nullptr;
}
void cuEmuClockAdvance(double ms) { clock_ms += ms; }
CUresult cuEventCreate(void** e, unsigned) {
    if (!e) return ERR_INVALID_VALUE;
    *e = new Event{MAGIC_EVENT, false, 0.0};
    return OK;
}
CUresult cuEventRecord(void* e, void*) {
    Event* ev = as_event(e);
    if (!ev) return ERR_INVALID_HANDLE;
    ev->recorded = true;
    ev->at = clock_ms;
    return OK;
}
CUresult cuEventSynchronize(void* e) { return as_event(e) ? OK : ERR_INVALID_HANDLE; }
CUresult cuEventQuery(void* e) { return as_event(e) ? OK : ERR_INVALID_HANDLE; }
// As the reference says: either event not recorded yet is CUDA_ERROR_INVALID_HANDLE.
CUresult cuEventElapsedTime_v2(float* ms, void* start, void* end) {
    Event *a = as_event(start), *b = as_event(end);
    if (!ms) return ERR_INVALID_VALUE;
    if (!a || !b || !a->recorded || !b->recorded) return ERR_INVALID_HANDLE;
    *ms = (float)(b->at - a->at);
    return OK;
}
CUresult cuEventElapsedTime(float* ms, void* start, void* end) { return cuEventElapsedTime_v2(ms, start, end); }
CUresult cuEventDestroy_v2(void* e) {
    Event* ev = as_event(e);
    if (!ev) return ERR_INVALID_HANDLE;
    ev->magic = 0;
    delete ev;
    return OK;
}
CUresult cuGetErrorName(CUresult e, const char** s) {
    *s = e == OK                   ? "CUDA_SUCCESS"
         : e == ERR_NOT_FOUND      ? "CUDA_ERROR_NOT_FOUND"
         : e == ERR_OUT_OF_MEMORY  ? "CUDA_ERROR_OUT_OF_MEMORY"
         : e == ERR_INVALID_HANDLE ? "CUDA_ERROR_INVALID_HANDLE"
                                   : "CUDA_ERROR_INVALID_VALUE";
    return OK;
}
CUresult cuGetErrorString(CUresult e, const char** s) {
    *s = e == OK ? "no error" : "emulated error";
    return OK;
}
}
#pragma GCC visibility pop
