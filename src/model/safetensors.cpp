#include "loom/model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/strings.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/model/safetensors_header.hpp"

namespace loom {
namespace detail {
namespace {

// The torch side of safetensorsDtypes() (safetensors_header.cpp): the same names.
struct DtypeName {
  const char* name;
  at::ScalarType dtype;
};
constexpr DtypeName kDtypes[] = {
    {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16}, {"F64", at::kDouble},
    {"I64", at::kLong},  {"I32", at::kInt},   {"I16", at::kShort},     {"I8", at::kChar},
    {"U8", at::kByte},   {"BOOL", at::kBool},
};

bool parseDtype(const std::string& name, at::ScalarType* out) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

}  // namespace
}  // namespace detail

std::string safetensorsDtypeName(at::ScalarType dtype) {
  for (const auto& d : detail::kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  LOOM_CHECK(false, "safetensors cannot store dtype " << c10::toString(dtype));
}

// ---------------------------------------------------------------------------------------------
// Reading

struct SafetensorsFile::Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base && size) ::munmap(base, size);
  }
};

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  const int fd = ::open(path.c_str(), O_RDONLY);
  LOOM_INPUT_CHECK(fd >= 0, "safetensors file " << file << ": cannot be opened ("
                                                << std::strerror(errno) << ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    LOOM_INPUT_CHECK(false, "safetensors file " << file << ": cannot stat");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  mapping_ = std::make_shared<Mapping>();
  if (file_size > 0) {
    // Private and writable: tensors over the mapping may be written to by mistake (in-place
    // ops); copy-on-write keeps such writes away from the file.
    void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      LOOM_INPUT_CHECK(false, "safetensors file " << file << ": cannot be mapped ("
                                                  << std::strerror(err) << ")");
    }
    mapping_->base = base;
    mapping_->size = file_size;
  }
  ::close(fd);

  const SafetensorsHeader header = parseSafetensorsHeader(
      std::string_view(static_cast<const char*>(mapping_->base), file_size), file);
  metadata_ = header.metadata;
  for (const auto& [name, h] : header.entries) {
    SafetensorsEntry e;
    e.name = name;
    LOOM_CHECK(detail::parseDtype(h.dtype, &e.dtype), "no torch dtype for safetensors " << h.dtype);
    e.shape = h.shape;
    e.begin = h.begin;
    e.end = h.end;
    entries_.emplace(name, std::move(e));
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  LOOM_INPUT_CHECK(it != entries_.end(),
                   "safetensors file " << path_.string() << ": no tensor '" << name << "'");
  return it->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto& e = entry(name);
  const uint64_t header_len = [&] {
    uint64_t n = 0;
    std::memcpy(&n, mapping_->base, 8);
    return n;
  }();
  char* data = static_cast<char*>(mapping_->base) + 8 + header_len + e.begin;
  const auto options = at::TensorOptions().dtype(e.dtype).device(at::kCPU);
  if (e.end == e.begin) return at::empty(e.shape, options);
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(e.dtype) != 0) {
    auto out = at::empty(e.shape, options);
    std::memcpy(out.data_ptr(), data, e.end - e.begin);
    return out;
  }
  auto keep = mapping_;
  return at::from_blob(
      data, e.shape, [keep](void*) mutable { keep.reset(); }, options);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (one file or shards)

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::filesystem::path& path,
                                                  const std::string& prefix) {
  namespace fs = std::filesystem;
  SafetensorsCheckpoint ckpt;
  ckpt.source_ = path;
  fs::path single, index;
  if (fs::is_directory(path)) {
    single = path / (prefix + ".safetensors");
    index = path / (prefix + ".safetensors.index.json");
  } else if (path.string().size() > 5 && path.extension() == ".json") {
    index = path;
  } else {
    single = path;
  }
  auto add_file = [&](const fs::path& p) {
    ckpt.files_.push_back(std::make_shared<SafetensorsFile>(p));
    return ckpt.files_.size() - 1;
  };
  if (!index.empty() && fs::exists(index)) {
    const std::string text = readUtf8TextFile(index, "safetensors index");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      LOOM_INPUT_CHECK(false, "safetensors index " << index.string() << ": not valid JSON ("
                                                   << printableText(e.what()) << ")");
    }
    LOOM_INPUT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                     "safetensors index " << index.string()
                                          << ": expected an object with a 'weight_map' object");
    std::map<std::string, size_t> file_index;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      LOOM_INPUT_CHECK(it.value().is_string(), "safetensors index "
                                                   << index.string() << ": weight_map entry '"
                                                   << it.key() << "' must name a file");
      const auto shard = it.value().get<std::string>();
      auto f = file_index.find(shard);
      if (f == file_index.end()) {
        const fs::path shard_path = index.parent_path() / shard;
        LOOM_INPUT_CHECK(fs::exists(shard_path), "safetensors index "
                                                     << index.string() << ": shard " << shard
                                                     << " (holding tensor '" << it.key()
                                                     << "') does not exist");
        f = file_index.emplace(shard, add_file(shard_path)).first;
      }
      LOOM_INPUT_CHECK(ckpt.files_[f->second]->contains(it.key()),
                       "safetensors index " << index.string() << ": tensor '" << it.key()
                                            << "' is not in shard " << shard);
      ckpt.owner_[it.key()] = f->second;
    }
    for (const auto& [shard, i] : file_index) {
      for (const auto& name : ckpt.files_[i]->names()) {
        LOOM_INPUT_CHECK(ckpt.owner_.count(name), "safetensors index "
                                                      << index.string() << ": shard " << shard
                                                      << " holds tensor '" << name
                                                      << "', which the index does not list");
      }
    }
    return ckpt;
  }
  LOOM_INPUT_CHECK(!single.empty() && fs::exists(single),
                   "checkpoint " << path.string() << ": no " << prefix << ".safetensors or "
                                 << prefix << ".safetensors.index.json found");
  const size_t i = add_file(single);
  for (const auto& name : ckpt.files_[i]->names()) ckpt.owner_[name] = i;
  return ckpt;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : owner_) out.push_back(kv.first);
  return out;
}

const SafetensorsFile& SafetensorsCheckpoint::fileOf(const std::string& name) const {
  auto it = owner_.find(name);
  LOOM_INPUT_CHECK(it != owner_.end(),
                   "checkpoint " << source_.string() << ": no tensor '" << name << "'");
  return *files_[it->second];
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace detail {
namespace {

/// A file written under a temporary name and renamed into place on commit().
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path target)
      : target_(std::move(target)), tmp_(temporarySibling(target_)) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    LOOM_CHECK(fd_ >= 0, "cannot create " << tmp_ << ": " << std::strerror(errno));
  }
  ~AtomicFileWriter() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      LOOM_CHECK(w > 0, "cannot write " << tmp_ << ": " << std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void commit() {
    LOOM_CHECK(::fsync(fd_) == 0, "cannot fsync " << tmp_ << ": " << std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    std::filesystem::rename(tmp_, target_, ec);
    if (ec) ::unlink(tmp_.c_str());
    LOOM_CHECK(!ec, "cannot rename " << tmp_ << " to " << target_ << ": " << ec.message());
    fsyncPath(target_.has_parent_path() ? target_.parent_path() : std::filesystem::path("."));
  }

 private:
  std::filesystem::path target_;
  std::filesystem::path tmp_;
  int fd_ = -1;
};

uint64_t tensorBytes(const at::Tensor& t) {
  return static_cast<uint64_t>(t.numel()) * t.element_size();
}

}  // namespace
}  // namespace detail

void saveSafetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                     std::map<std::string, std::string> metadata) {
  metadata.emplace("format", "pt");
  nlohmann::ordered_json header;
  header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    LOOM_CHECK(t.defined(), "tensor '" << name << "' is undefined");
    LOOM_CHECK(!header.contains(name), "tensor '" << name << "' is written twice");
    const uint64_t n = detail::tensorBytes(t);
    header[name] = {{"dtype", safetensorsDtypeName(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  // The data section starts 8-aligned so that every tensor of an aligned dtype maps in place.
  text.append((8 - text.size() % 8) % 8, ' ');
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  detail::AtomicFileWriter out(path);
  const uint64_t header_len = text.size();
  out.write(&header_len, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : tensors) {
    const at::Tensor c = t.detach().to(at::kCPU).contiguous();
    out.write(c.data_ptr(), detail::tensorBytes(c));
  }
  out.commit();
}

std::vector<std::filesystem::path> saveSafetensorsSharded(const std::filesystem::path& dir,
                                                          const NamedTensors& tensors,
                                                          uint64_t max_shard_bytes,
                                                          const std::string& prefix) {
  namespace fs = std::filesystem;
  LOOM_CHECK(max_shard_bytes > 0, "max_shard_bytes must be positive");
  fs::create_directories(dir);
  // Greedy in order, like transformers: a tensor larger than the limit gets a shard of its own.
  std::vector<NamedTensors> shards(1);
  uint64_t current = 0, total = 0;
  for (const auto& nt : tensors) {
    const uint64_t n = detail::tensorBytes(nt.second);
    if (!shards.back().empty() && current + n > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += n;
    total += n;
  }
  const fs::path single = dir / (prefix + ".safetensors");
  const fs::path index = dir / (prefix + ".safetensors.index.json");
  std::vector<fs::path> written;
  if (shards.size() == 1) {
    saveSafetensors(single, shards[0]);
    written.push_back(single);
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    const size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "-%05zu-of-%05zu.safetensors", i + 1, n);
      const fs::path p = dir / (prefix + name);
      saveSafetensors(p, shards[i]);
      written.push_back(p);
      for (const auto& nt : shards[i]) weight_map[nt.first] = p.filename().string();
    }
    nlohmann::ordered_json j;
    j["metadata"] = {{"total_size", total}};
    j["weight_map"] = weight_map;
    writeFileAtomic(index, j.dump(2) + "\n");
    written.push_back(index);
  }
  // Leftovers of an earlier save with another shard count would make the folder ambiguous.
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string fname = entry.path().filename().string();
    const bool ours =
        fname == single.filename().string() || fname == index.filename().string() ||
        (startsWith(fname, prefix + "-") && entry.path().extension() == ".safetensors" &&
         fname.find("-of-") != std::string::npos);
    if (ours && std::find(written.begin(), written.end(), entry.path()) == written.end()) {
      fs::remove(entry.path());
    }
  }
  return written;
}

}  // namespace loom
