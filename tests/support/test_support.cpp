#include "support/test_support.hpp"

#include "loom/core/error.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace loom::testing {

namespace {
// Puts the build's test settings (tests/CMakeLists.txt, LOOM_TEST_ENV) into the environment
// before any test runs, keeping whatever the caller already set.
const bool kDefaultEnvInstalled = [] {
#ifdef LOOM_TEST_DEFAULT_ENV
  std::stringstream all(LOOM_TEST_DEFAULT_ENV);
  for (std::string entry; std::getline(all, entry);) {
    const auto eq = entry.find('=');
    if (eq != std::string::npos) ::setenv(entry.substr(0, eq).c_str(), entry.c_str() + eq + 1, 0);
  }
#endif
  return true;
}();
}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::random_device rd;
  const auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate =
        base / (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (std::filesystem::create_directories(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("could not create a temporary folder under " + base.string());
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::write(const std::string& name, const std::string& text) const {
  auto p = path_ / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << text;
  return p;
}

ProcessResult runProcess(const std::vector<std::string>& argv) {
  int fds[2];
  // Close-on-exec: a process forked meanwhile by another thread must not keep our write end
  // open (the read below would wait for it to exit). dup2 onto 1 and 2 clears the flag.
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::string msg = "exec failed: " + argv[0] + "\n";
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  ::close(fds[1]);
  ProcessResult result;
  std::array<char, 4096> buf{};
  ssize_t n;
  while ((n = ::read(fds[0], buf.data(), buf.size())) > 0) result.output.append(buf.data(), n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

std::string requireEnv(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    throw std::runtime_error(std::string("environment variable ") + name +
                             " is not set: run this test through ctest");
  }
  return v;
}

std::string trainerPath() { return requireEnv("LOOM_TRAINER"); }
std::string pythonPath() { return requireEnv("LOOM_PYTHON"); }
std::filesystem::path sourceDir() { return requireEnv("LOOM_SOURCE_DIR"); }

ProcessResult runPythonScript(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv{pythonPath(), (sourceDir() / "tests" / "python" / script).string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return runProcess(argv);
}

std::string codePointToUtf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ProcessResult runTrainer(const std::vector<std::string>& args) {
  std::vector<std::string> argv{trainerPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = runProcess(argv);
  std::cout << "$ trainer";
  for (const auto& a : args) std::cout << " " << a;
  std::cout << "  -> exit " << r.exit_code << "\n" << r.output << "\n";
  return r;
}

std::filesystem::path sharedTokenizersDir() {
  if (const char* qwen3 = std::getenv("LOOM_QWEN3_TOKENIZER"); qwen3 && *qwen3) {
    return std::filesystem::path(qwen3).parent_path();
  }
  if (const char* src = std::getenv("LOOM_SOURCE_DIR"); src && *src) {
    return std::filesystem::path(src) / ".." / "shared" / "tokenizers";
  }
  return {};
}

std::string inputErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

}  // namespace loom::testing
