#include "fuzz_support.hpp"

#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>

#include "loom/data/hdf5_dataset.hpp"

namespace loom::fuzz {

namespace {

std::filesystem::path makeScratchDir() {
  namespace fs = std::filesystem;
  fs::path base;
  if (const char* env = std::getenv("LOOM_FUZZ_TMPDIR"); env && *env) {
    base = env;
  } else if (std::error_code ec;
             fs::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0) {
    base = "/dev/shm";
  } else {
    base = fs::temp_directory_path();
  }
  const fs::path dir = base / ("loom-fuzz-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

}  // namespace

const std::filesystem::path& scratchDir() {
  static const std::filesystem::path dir = [] {
    auto d = makeScratchDir();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratchDir(), ec);
    });
    return d;
  }();
  return dir;
}

std::filesystem::path writeScratch(const std::string& name, std::string_view bytes) {
  const auto path = scratchDir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(LOOM_FUZZ_FIXTURES) / name;
}

std::vector<std::string_view> splitAtNul(std::string_view text, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t nul = text.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(text.substr(0, nul));
    text.remove_prefix(nul + 1);
  }
  parts.push_back(text);
  return parts;
}

bool printErrors() {
  static const bool print = std::getenv("LOOM_FUZZ_PRINT_ERRORS") != nullptr;
  return print;
}

void expectNoOpenHdf5Objects() {
  std::lock_guard<std::recursive_mutex> lock(hdf5Mutex());
  const ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  LOOM_FUZZ_EXPECT(open == 0, open << " HDF5 object(s) left open");
}

void failExpectation(const char* file, int line, const char* condition,
                     const std::string& message) {
  std::fprintf(stderr, "\n%s:%d: fuzz expectation `%s` failed: %s\n", file, line, condition,
               message.c_str());
  std::abort();
}

}  // namespace loom::fuzz
