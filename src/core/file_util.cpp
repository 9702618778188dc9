#include "loom/core/file_util.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "loom/core/error.hpp"

namespace loom {

std::filesystem::path temporarySibling(const std::filesystem::path& target) {
  static std::atomic<unsigned> counter{0};
  auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  return dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                std::to_string(counter++));
}

namespace {
int removeEntry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path) == 0 ? 0 : -1;
}
}  // namespace

bool removeTree(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0;
  // Children before parents (FTW_DEPTH), symbolic links not followed (FTW_PHYS).
  return ::nftw(path.c_str(), removeEntry, 32, FTW_DEPTH | FTW_PHYS) == 0;
}

void fsyncPath(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: some filesystems refuse to open folders
  ::fsync(fd);
  ::close(fd);
}

namespace {
int fsyncEntry(const char* path, const struct stat*, int, struct FTW*) {
  fsyncPath(path);
  return 0;
}
}  // namespace

void fsyncTree(const std::filesystem::path& dir) {
  // nftw rather than std::filesystem's recursive iterator: see removeTree.
  ::nftw(dir.c_str(), fsyncEntry, 32, FTW_PHYS);
}

void writeFileAtomic(const std::filesystem::path& path, const std::string& contents) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const auto tmp = temporarySibling(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  LOOM_CHECK(fd >= 0, "cannot create " << tmp << ": " << std::strerror(errno));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      LOOM_CHECK(false, "cannot write " << tmp << ": " << std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    ::unlink(tmp.c_str());
    LOOM_CHECK(false, "cannot rename " << tmp << " to " << path << ": " << ec.message());
  }
  fsyncPath(path.has_parent_path() ? path.parent_path() : std::filesystem::path("."));
}

std::string readFileOrThrow(const std::filesystem::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  LOOM_INPUT_CHECK(
      in.good(),
      what << " " << path.string() << ": cannot be read ("
           << (std::filesystem::exists(path) ? "permission or I/O error" : "no such file") << ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace loom
