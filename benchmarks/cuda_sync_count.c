// LD_PRELOAD shim counting the CUDA runtime calls that make the host wait for the device:
// cudaStreamSynchronize, cudaDeviceSynchronize, cudaEventSynchronize, cudaMemcpy (blocking)
// and cudaFree (which synchronises the device). libtorch calls them through libcudart.so's
// dynamic symbols, so a process started with LD_PRELOAD=this reaches these wrappers first;
// each counts and calls the real function (dlsym RTLD_NEXT). The counts live in a file
// mapped shared (LOOM_SYNC_COUNT_FILE, with ".<pid>" appended): five int64, in the order
// above, current at any moment, however the process ends. Used by benchmarks/sync_count.py.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { kStream, kDevice, kEvent, kMemcpy, kFree, kCounters };

static int64_t* counters(void) {
  static int64_t* mapped = NULL;
  static int64_t fallback[kCounters];
  if (mapped) return mapped;
  const char* base = getenv("LOOM_SYNC_COUNT_FILE");
  if (!base) return fallback;
  char path[4096];
  snprintf(path, sizeof(path), "%s.%d", base, (int)getpid());
  const int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ftruncate(fd, sizeof(int64_t) * kCounters) != 0) return fallback;
  void* p = mmap(NULL, sizeof(int64_t) * kCounters, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return fallback;
  mapped = (int64_t*)p;
  return mapped;
}

static void count(int which) { __atomic_fetch_add(&counters()[which], 1, __ATOMIC_RELAXED); }

// cudaError_t is an int-sized enum; streams and events are pointers.
#define LOOM_WRAP(name, which, params, args)                  \
  int name params {                                           \
    static int(*real) params = NULL;                          \
    if (!real) real = (int(*) params)dlsym(RTLD_NEXT, #name); \
    count(which);                                             \
    return real ? real args : 1; /* cudaErrorInvalidValue */  \
  }

LOOM_WRAP(cudaStreamSynchronize, kStream, (void* stream), (stream))
LOOM_WRAP(cudaDeviceSynchronize, kDevice, (void), ())
LOOM_WRAP(cudaEventSynchronize, kEvent, (void* event), (event))
LOOM_WRAP(cudaMemcpy, kMemcpy, (void* dst, const void* src, size_t n, int kind),
          (dst, src, n, kind))
LOOM_WRAP(cudaFree, kFree, (void* ptr), (ptr))
