// The token file's writer: samples stream into chunked, extendible arrays of a temporary
// file, and finish() writes the index and attributes and renames the file into place.

#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>
#include <string>

#include "hdf5_util.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"

namespace loom {
namespace detail {
namespace {

std::string nowIso8601() {
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

// ---------------------------------------------------------------- writing helpers

H5Id variableStringType() {
  H5Id type = typeId(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  return type;
}

// Variable-length: the bytes go to the file's global heap and the object header holds only
// a reference, so values far beyond the header's 64 KB attribute limit need no dense
// attribute storage (hdf5_dataset_test writes 200 KB).
void writeStringAttribute(hid_t loc, const char* name, const std::string& value) {
  H5Id type = variableStringType();
  H5Id space = spaceId(H5Screate(H5S_SCALAR));
  H5Id attr = attributeId(H5Acreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  const char* data = value.c_str();
  LOOM_CHECK(attr.valid() && H5Awrite(attr.get(), type.get(), &data) >= 0,
             "cannot write attribute '" << name << "': " << hdf5ErrorText());
}

void writeStringArrayAttribute(hid_t loc, const char* name,
                               const std::vector<std::string>& values) {
  H5Id type = variableStringType();
  const hsize_t dims[1] = {values.size()};
  H5Id space = spaceId(H5Screate_simple(1, dims, nullptr));
  H5Id attr = attributeId(H5Acreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  std::vector<const char*> data;
  for (const auto& v : values) data.push_back(v.c_str());
  LOOM_CHECK(attr.valid() && (values.empty() || H5Awrite(attr.get(), type.get(), data.data()) >= 0),
             "cannot write attribute '" << name << "': " << hdf5ErrorText());
}

void writeIntAttribute(hid_t loc, const char* name, int64_t value) {
  H5Id space = spaceId(H5Screate(H5S_SCALAR));
  H5Id attr =
      attributeId(H5Acreate2(loc, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  LOOM_CHECK(attr.valid() && H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) >= 0,
             "cannot write attribute '" << name << "': " << hdf5ErrorText());
}

/// A whole 1-D array as one contiguous dataset (the index: small, read whole).
void writeWholeDataset(hid_t file, const char* name, hid_t file_type, hid_t mem_type,
                       const void* data, hsize_t count) {
  const hsize_t dims[1] = {count};
  H5Id space = spaceId(H5Screate_simple(1, dims, nullptr));
  H5Id dataset = datasetId(
      H5Dcreate2(file, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  LOOM_CHECK(dataset.valid(), "cannot create dataset /" << name << ": " << hdf5ErrorText());
  if (count > 0) {
    LOOM_CHECK(H5Dwrite(dataset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0,
               "cannot write dataset /" << name << ": " << hdf5ErrorText());
  }
}

}  // namespace
}  // namespace detail

using detail::H5Id;

struct Hdf5DatasetWriter::Impl {
  std::filesystem::path path;
  std::filesystem::path temp_path;
  Hdf5DatasetInfo info;
  Options options;
  H5Id file;
  H5Id tokens;
  H5Id loss_mask;
  std::vector<int32_t> token_buffer;  // [buffered] not yet written to /tokens
  std::vector<uint8_t> mask_buffer;   // [buffered]
  int64_t written = 0;                // elements already in /tokens and /loss_mask
  std::vector<int64_t> offsets{0};    // [samples + 1]
  std::vector<int32_t> loss_tokens;   // [samples]
  int64_t num_loss_tokens = 0;
  std::map<std::string, std::string> extra_attributes;  // setStringAttribute, by name
  bool finished = false;

  H5Id createExtendible(const char* name, hid_t file_type) {
    const hsize_t dims[1] = {0};
    const hsize_t max_dims[1] = {H5S_UNLIMITED};
    H5Id space = detail::spaceId(H5Screate_simple(1, dims, max_dims));
    H5Id dcpl = detail::plistId(H5Pcreate(H5P_DATASET_CREATE));
    const hsize_t chunk[1] = {static_cast<hsize_t>(options.chunk_elements)};
    H5Pset_chunk(dcpl.get(), 1, chunk);
    if (options.deflate_level > 0) {
      H5Pset_shuffle(dcpl.get());
      H5Pset_deflate(dcpl.get(), static_cast<unsigned>(options.deflate_level));
    }
    H5Id dataset = detail::datasetId(
        H5Dcreate2(file.get(), name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    LOOM_CHECK(dataset.valid(),
               "cannot create /" << name << " in " << temp_path << ": " << detail::hdf5ErrorText());
    return dataset;
  }

  void appendTo(const H5Id& dataset, hid_t mem_type, const void* data, int64_t count,
                const char* name) {
    const hsize_t new_size[1] = {static_cast<hsize_t>(written + count)};
    LOOM_CHECK(H5Dset_extent(dataset.get(), new_size) >= 0,
               "cannot extend /" << name << " in " << temp_path << ": " << detail::hdf5ErrorText());
    H5Id file_space = detail::spaceId(H5Dget_space(dataset.get()));
    const hsize_t offset[1] = {static_cast<hsize_t>(written)};
    const hsize_t block[1] = {static_cast<hsize_t>(count)};
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, nullptr, block, nullptr);
    H5Id mem_space = detail::spaceId(H5Screate_simple(1, block, nullptr));
    LOOM_CHECK(H5Dwrite(dataset.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT,
                        data) >= 0,
               "cannot write /" << name << " in " << temp_path << ": " << detail::hdf5ErrorText());
  }

  void flushBuffers() {
    const auto count = static_cast<int64_t>(token_buffer.size());
    if (count == 0) return;
    appendTo(tokens, H5T_NATIVE_INT32, token_buffer.data(), count, kTokensDataset);
    appendTo(loss_mask, H5T_NATIVE_UINT8, mask_buffer.data(), count, kLossMaskDataset);
    written += count;
    token_buffer.clear();
    mask_buffer.clear();
  }

  void closeHandles() {
    tokens.reset();
    loss_mask.reset();
    file.reset();
  }

  // Also runs when the writer's constructor throws after creating the file.
  ~Impl() {
    if (finished || temp_path.empty()) return;
    try {
      closeHandles();
    } catch (...) {
      // Best effort: the file is being thrown away.
    }
    std::error_code ec;
    std::filesystem::remove(temp_path, ec);
  }
};

Hdf5DatasetWriter::Hdf5DatasetWriter(std::filesystem::path path, Hdf5DatasetInfo info)
    : Hdf5DatasetWriter(std::move(path), std::move(info), Options{}) {}

Hdf5DatasetWriter::Hdf5DatasetWriter(std::filesystem::path path, Hdf5DatasetInfo info,
                                     Options options)
    : impl_(std::make_unique<Impl>()) {
  LOOM_CHECK(info.vocab_size > 0, "a token file needs vocab_size > 0, got " << info.vocab_size);
  LOOM_CHECK(options.chunk_elements > 0, "chunk_elements must be > 0");
  LOOM_CHECK(options.deflate_level >= 0 && options.deflate_level <= 9,
             "deflate_level must be 0..9, got " << options.deflate_level);
  auto lock = detail::lockHdf5();
  impl_->path = std::move(path);
  impl_->info = std::move(info);
  impl_->options = options;
  if (impl_->path.has_parent_path()) std::filesystem::create_directories(impl_->path.parent_path());
  impl_->temp_path = temporarySibling(impl_->path);
  impl_->file =
      detail::fileId(H5Fcreate(impl_->temp_path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
  LOOM_CHECK(impl_->file.valid(),
             "cannot create " << impl_->temp_path << ": " << detail::hdf5ErrorText());
  impl_->tokens = impl_->createExtendible(kTokensDataset, H5T_STD_I32LE);
  impl_->loss_mask = impl_->createExtendible(kLossMaskDataset, H5T_STD_U8LE);
  impl_->token_buffer.reserve(static_cast<size_t>(options.chunk_elements));
  impl_->mask_buffer.reserve(static_cast<size_t>(options.chunk_elements));
}

Hdf5DatasetWriter::~Hdf5DatasetWriter() = default;

void Hdf5DatasetWriter::append(const std::vector<int32_t>& tokens,
                               const std::vector<uint8_t>& loss_mask) {
  LOOM_CHECK(tokens.size() == loss_mask.size(), "sample " << impl_->loss_tokens.size() << ": "
                                                          << tokens.size() << " tokens but "
                                                          << loss_mask.size() << " mask values");
  append(tokens.data(), loss_mask.data(), static_cast<int64_t>(tokens.size()));
}

void Hdf5DatasetWriter::append(const int32_t* tokens, const uint8_t* loss_mask, int64_t length) {
  Impl& s = *impl_;
  LOOM_CHECK(!s.finished, "append after finish() on " << s.path);
  LOOM_CHECK(length >= 0, "negative sample length " << length);
  const auto sample = static_cast<int64_t>(s.loss_tokens.size());
  int64_t targets = 0;
  for (int64_t t = 0; t < length; ++t) {
    LOOM_CHECK(tokens[t] >= 0 && tokens[t] < s.info.vocab_size,
               "sample " << sample << " position " << t << ": token id " << tokens[t]
                         << " is outside the vocabulary [0, " << s.info.vocab_size << ")");
    LOOM_CHECK(loss_mask[t] <= 1, "sample " << sample << " position " << t << ": loss mask value "
                                            << static_cast<int>(loss_mask[t]) << ", expected 0/1");
    if (t > 0) targets += loss_mask[t];
  }
  LOOM_CHECK(targets <= INT32_MAX, "sample " << sample << " has too many loss tokens");
  auto lock = detail::lockHdf5();
  int64_t done = 0;
  while (done < length) {
    const int64_t room = s.options.chunk_elements - static_cast<int64_t>(s.token_buffer.size());
    const int64_t take = std::min(room, length - done);
    s.token_buffer.insert(s.token_buffer.end(), tokens + done, tokens + done + take);
    const size_t mask_start = s.mask_buffer.size();
    s.mask_buffer.insert(s.mask_buffer.end(), loss_mask + done, loss_mask + done + take);
    if (done == 0 && take > 0) s.mask_buffer[mask_start] = 0;  // never a target: see header
    done += take;
    if (static_cast<int64_t>(s.token_buffer.size()) == s.options.chunk_elements) s.flushBuffers();
  }
  s.offsets.push_back(s.offsets.back() + length);
  s.loss_tokens.push_back(static_cast<int32_t>(targets));
  s.num_loss_tokens += targets;
}

void Hdf5DatasetWriter::setStringAttribute(const std::string& name, const std::string& value) {
  LOOM_CHECK(!impl_->finished, "setStringAttribute after finish() on " << impl_->path);
  LOOM_CHECK(!name.empty() && name.find('\0') == std::string::npos,
             "a token file attribute needs a non-empty name without NUL bytes");
  for (const char* reserved : kTokensReservedAttributes) {
    LOOM_CHECK(name != reserved, "attribute '" << name << "' is part of the " << kTokensFormatName
                                               << " format and written by the writer itself");
  }
  // Stored as a C string by HDF5: an embedded NUL would cut it short without a word.
  LOOM_CHECK(value.find('\0') == std::string::npos,
             "attribute '" << name << "': the value holds a NUL byte");
  impl_->extra_attributes[name] = value;
}

void Hdf5DatasetWriter::finish() {
  Impl& s = *impl_;
  LOOM_CHECK(!s.finished, "finish() called twice on " << s.path);
  {
    auto lock = detail::lockHdf5();
    s.flushBuffers();
    const hid_t file = s.file.get();
    detail::writeWholeDataset(file, kOffsetsDataset, H5T_STD_I64LE, H5T_NATIVE_INT64,
                              s.offsets.data(), s.offsets.size());
    detail::writeWholeDataset(file, kLossTokensDataset, H5T_STD_I32LE, H5T_NATIVE_INT32,
                              s.loss_tokens.data(), s.loss_tokens.size());
    const Hdf5DatasetInfo& info = s.info;
    detail::writeStringAttribute(file, "format", kTokensFormatName);
    detail::writeIntAttribute(file, "format_version", kTokensFormatVersion);
    detail::writeStringAttribute(file, "tokenizer_hash", info.tokenizer_hash);
    detail::writeIntAttribute(file, "vocab_size", info.vocab_size);
    detail::writeIntAttribute(file, "eos_id", info.eos_id);
    detail::writeIntAttribute(file, "pad_id", info.pad_id);
    detail::writeStringArrayAttribute(file, "source_files", info.source_files);
    detail::writeStringAttribute(file, "template", info.template_name);
    detail::writeStringAttribute(file, "created",
                                 info.created.empty() ? detail::nowIso8601() : info.created);
    detail::writeIntAttribute(file, "num_samples", numSamples());
    detail::writeIntAttribute(file, "num_tokens", numTokens());
    detail::writeIntAttribute(file, "num_loss_tokens", s.num_loss_tokens);
    for (const auto& [name, value] : s.extra_attributes) {
      detail::writeStringAttribute(file, name.c_str(), value);
    }
    LOOM_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0,
               "cannot flush " << s.temp_path << ": " << detail::hdf5ErrorText());
    s.closeHandles();
  }
  fsyncPath(s.temp_path);
  std::error_code ec;
  std::filesystem::rename(s.temp_path, s.path, ec);
  LOOM_CHECK(!ec, "cannot rename " << s.temp_path << " to " << s.path << ": " << ec.message());
  s.finished = true;
  fsyncPath(s.path.has_parent_path() ? s.path.parent_path() : std::filesystem::path("."));
}

int64_t Hdf5DatasetWriter::numSamples() const {
  return static_cast<int64_t>(impl_->loss_tokens.size());
}
int64_t Hdf5DatasetWriter::numTokens() const { return impl_->offsets.back(); }
int64_t Hdf5DatasetWriter::numLossTokens() const { return impl_->num_loss_tokens; }
const std::filesystem::path& Hdf5DatasetWriter::path() const { return impl_->path; }

}  // namespace loom
