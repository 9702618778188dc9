// The token file's reader: opening validates the format, the index and every sample (first
// in a forked child, since libhdf5 can crash on a damaged file); reads then fetch samples'
// token ranges on demand.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <numeric>
#include <string>
#include <utility>

#include "hdf5_util.hpp"
#include "loom/core/error.hpp"
#include "loom/core/isolated_call.hpp"

namespace loom {
namespace detail {
namespace {

/// Where a reader's error points: the file's name.
struct Place {
  std::string file;
};

bool hasAttribute(hid_t loc, const char* name) { return H5Aexists(loc, name) > 0; }

/// Reads a string attribute (scalar or array; fixed-length or variable-length strings,
/// which is what h5py writes for a Python str).
std::vector<std::string> readStrings(hid_t loc, const char* name, const Place& place) {
  H5Id attr = attributeId(H5Aopen(loc, name, H5P_DEFAULT));
  LOOM_INPUT_CHECK(attr.valid(),
                   place.file << ": cannot read attribute '" << name << "': " << hdf5ErrorText());
  H5Id file_type = typeId(H5Aget_type(attr.get()));
  H5Id space = spaceId(H5Aget_space(attr.get()));
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  std::vector<std::string> out;
  if (count <= 0) return out;  // h5py stores an empty list as an empty float array
  LOOM_INPUT_CHECK(H5Tget_class(file_type.get()) == H5T_STRING,
                   place.file << ": attribute '" << name << "' should be a string");
  if (H5Tis_variable_str(file_type.get()) > 0) {
    H5Id mem_type = typeId(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem_type.get(), H5T_VARIABLE);
    H5Tset_cset(mem_type.get(), H5Tget_cset(file_type.get()));
    std::vector<char*> data(static_cast<size_t>(count), nullptr);
    LOOM_INPUT_CHECK(H5Aread(attr.get(), mem_type.get(), data.data()) >= 0,
                     place.file << ": cannot read attribute '" << name << "': " << hdf5ErrorText());
    for (char* s : data) out.emplace_back(s ? s : "");
    H5Dvlen_reclaim(mem_type.get(), space.get(), H5P_DEFAULT, data.data());
  } else {
    const size_t size = H5Tget_size(file_type.get());
    H5Id mem_type = typeId(H5Tcopy(file_type.get()));
    std::vector<char> data(size * static_cast<size_t>(count) + 1, '\0');
    LOOM_INPUT_CHECK(H5Aread(attr.get(), mem_type.get(), data.data()) >= 0,
                     place.file << ": cannot read attribute '" << name << "': " << hdf5ErrorText());
    for (hssize_t i = 0; i < count; ++i) {
      const char* begin = data.data() + static_cast<size_t>(i) * size;
      out.emplace_back(begin, strnlen(begin, size));  // null-padded or null-terminated
    }
  }
  return out;
}

std::string readString(hid_t loc, const char* name, const Place& place) {
  auto values = readStrings(loc, name, place);
  LOOM_INPUT_CHECK(values.size() == 1, place.file << ": attribute '" << name
                                                  << "' should hold one string, found "
                                                  << values.size());
  return values[0];
}

herr_t collectAttributeName(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

/// Every attribute of `loc` that holds one string, by name. Read at open, inside the probe
/// child (openInChildFirst) like the other attributes: reading a variable-length string is
/// where a damaged file crashes libhdf5.
std::map<std::string, std::string> readSingleStrings(hid_t loc, const Place& place) {
  std::vector<std::string> names;
  hsize_t index = 0;
  LOOM_INPUT_CHECK(
      H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_NATIVE, &index, collectAttributeName, &names) >= 0,
      place.file << ": cannot list the root attributes: " << hdf5ErrorText());
  std::map<std::string, std::string> out;
  for (const auto& name : names) {
    {
      H5Id attr = attributeId(H5Aopen(loc, name.c_str(), H5P_DEFAULT));
      LOOM_INPUT_CHECK(attr.valid(), place.file << ": cannot read attribute '" << name
                                                << "': " << hdf5ErrorText());
      H5Id type = typeId(H5Aget_type(attr.get()));
      if (H5Tget_class(type.get()) != H5T_STRING) continue;
    }
    auto values = readStrings(loc, name.c_str(), place);
    if (values.size() == 1) out.emplace(name, std::move(values[0]));
  }
  return out;
}

int64_t readInt(hid_t loc, const char* name, const Place& place) {
  H5Id attr = attributeId(H5Aopen(loc, name, H5P_DEFAULT));
  LOOM_INPUT_CHECK(attr.valid(),
                   place.file << ": cannot read attribute '" << name << "': " << hdf5ErrorText());
  H5Id file_type = typeId(H5Aget_type(attr.get()));
  H5Id space = spaceId(H5Aget_space(attr.get()));
  LOOM_INPUT_CHECK(H5Tget_class(file_type.get()) == H5T_INTEGER &&
                       H5Sget_simple_extent_npoints(space.get()) == 1,
                   place.file << ": attribute '" << name << "' should be one integer");
  int64_t value = 0;
  LOOM_INPUT_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &value) >= 0,
                   place.file << ": cannot read attribute '" << name << "': " << hdf5ErrorText());
  return value;
}

/// Opens a 1-D integer dataset and returns it with its length.
std::pair<H5Id, int64_t> openArray(hid_t file, const char* name, const char* expected_type,
                                   const Place& place) {
  LOOM_INPUT_CHECK(H5Lexists(file, name, H5P_DEFAULT) > 0,
                   place.file << ": missing dataset /" << name << " (" << expected_type
                              << "); not a complete token file from `trainer prepare`");
  H5Id dataset = datasetId(H5Dopen2(file, name, H5P_DEFAULT));
  LOOM_INPUT_CHECK(dataset.valid(),
                   place.file << ": cannot open dataset /" << name << ": " << hdf5ErrorText());
  H5Id type = typeId(H5Dget_type(dataset.get()));
  LOOM_INPUT_CHECK(H5Tget_class(type.get()) == H5T_INTEGER, place.file << ": dataset /" << name
                                                                       << " should hold integers ("
                                                                       << expected_type << ")");
  H5Id space = spaceId(H5Dget_space(dataset.get()));
  LOOM_INPUT_CHECK(H5Sget_simple_extent_ndims(space.get()) == 1,
                   place.file << ": dataset /" << name << " should be one-dimensional ("
                              << expected_type << ")");
  hsize_t dims[1] = {0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  // The extent must be backed by bytes in the file, so that a damaged extent cannot make a
  // reader allocate more than the file could hold: extent x element size as stored; when the
  // dataset is filtered, at most 1032 times that (deflate, the compression libhdf5 ships,
  // compresses at most 1032:1).
  H5Id dcpl = plistId(H5Dget_create_plist(dataset.get()));
  hsize_t file_size = 0;
  H5Fget_filesize(file, &file_size);
  const auto stored = static_cast<unsigned __int128>(
      std::min<hsize_t>(H5Dget_storage_size(dataset.get()), file_size));
  const unsigned __int128 ratio = H5Pget_nfilters(dcpl.get()) > 0 ? 1032 : 1;
  const size_t element = H5Tget_size(type.get());
  H5Eclear2(H5E_DEFAULT);
  LOOM_INPUT_CHECK(dims[0] <= static_cast<hsize_t>(INT64_MAX) &&
                       static_cast<unsigned __int128>(dims[0]) * element <= stored * ratio,
                   place.file << ": dataset /" << name << " has " << dims[0] << " entries of "
                              << element << " bytes, but the file stores only "
                              << static_cast<uint64_t>(stored)
                              << " bytes of it (damaged or truncated?)");
  return {std::move(dataset), static_cast<int64_t>(dims[0])};
}

/// Reopens a chunked, uncompressed dataset without a chunk cache. Random sample reads
/// then fetch just their bytes; with the default 1 MiB cache every read of a few hundred
/// tokens pulled its whole chunk into the cache first (measured 5x slower). A compressed
/// chunk must be inflated whole anyway, so compressed datasets keep the cache.
H5Id withoutChunkCache(H5Id dataset, hid_t file, const char* name) {
  H5Id dcpl = plistId(H5Dget_create_plist(dataset.get()));
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED || H5Pget_nfilters(dcpl.get()) > 0) {
    return dataset;
  }
  H5Id dapl = plistId(H5Pcreate(H5P_DATASET_ACCESS));
  H5Pset_chunk_cache(dapl.get(), 0, 0, 1.0);
  // Close first: while a handle is open, a second open shares its cache settings.
  dataset.reset();
  H5Id reopened = datasetId(H5Dopen2(file, name, dapl.get()));
  LOOM_CHECK(reopened.valid(), "cannot reopen /" << name << ": " << hdf5ErrorText());
  return reopened;
}

template <typename T>
std::vector<T> readWholeArray(hid_t dataset, hid_t mem_type, int64_t count, const char* name,
                              const Place& place) {
  std::vector<T> out(static_cast<size_t>(count));
  if (count > 0) {
    LOOM_INPUT_CHECK(H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0,
                     place.file << ": cannot read dataset /" << name << ": " << hdf5ErrorText());
  }
  return out;
}

/// Reads elements [start, start + count) of a 1-D dataset into `out`.
void readRange(hid_t dataset, hid_t mem_type, int64_t start, int64_t count, void* out,
               const char* name, const Place& place) {
  if (count == 0) return;
  H5Id file_space = spaceId(H5Dget_space(dataset));
  const hsize_t offset[1] = {static_cast<hsize_t>(start)};
  const hsize_t block[1] = {static_cast<hsize_t>(count)};
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, nullptr, block, nullptr);
  H5Id mem_space = spaceId(H5Screate_simple(1, block, nullptr));
  LOOM_INPUT_CHECK(
      H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) >= 0,
      place.file << ": cannot read /" << name << "[" << start << ":" << start + count
                 << "]: " << hdf5ErrorText() << " (file damaged or truncated?)");
}

/// Reads `blocks` (ascending, disjoint) of a 1-D dataset into `out`, back to back, one
/// H5Dread per block: an OR-ed union selection is no faster and grows quadratically with
/// the number of blocks in HDF5 1.10.
void readBlocks(hid_t dataset, hid_t mem_type, size_t element_size,
                const std::vector<std::pair<int64_t, int64_t>>& blocks, void* out, const char* name,
                const Place& place) {
  auto* cursor = static_cast<char*>(out);
  for (const auto& [start, count] : blocks) {
    readRange(dataset, mem_type, start, count, cursor, name, place);
    cursor += static_cast<size_t>(count) * element_size;
  }
}

}  // namespace
}  // namespace detail

using detail::H5Id;

struct Hdf5Dataset::Impl {
  std::filesystem::path path;
  detail::Place place;
  Hdf5DatasetInfo info;
  H5Id file;
  H5Id tokens;
  H5Id loss_mask;
  std::vector<int64_t> offsets;                          // [n + 1]
  std::vector<int32_t> loss_tokens;                      // [n]
  std::map<std::string, std::string> string_attributes;  // root attributes holding one string

  int64_t numSamples() const { return static_cast<int64_t>(loss_tokens.size()); }

  void open(int64_t model_vocab_size);
  /// Reads every token and mask value once and checks each sample (validateSample), so that
  /// a bad id or count is refused at open, not when (and only if) a step reads that sample.
  void validateAllSamples() const;
  void validateSample(int64_t sample, const int32_t* tok, const uint8_t* mask) const;
};

void Hdf5Dataset::Impl::open(int64_t model_vocab_size) {
  const std::string& name = place.file;
  std::error_code ec;
  LOOM_INPUT_CHECK(std::filesystem::exists(path, ec), "data file " << name << ": no such file");
  LOOM_INPUT_CHECK(std::filesystem::is_regular_file(path, ec),
                   "data file " << name << ": not a regular file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  LOOM_INPUT_CHECK(is_hdf5 > 0, "data file " << name
                                             << " is not an HDF5 file (expected a token file "
                                                "written by `trainer prepare`)");
  // Read-only without file locking: many NFS and Lustre mounts (where clusters keep their
  // data) refuse HDF5's locks, and a reader has nothing to protect.
  const hid_t access = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_file_locking(access, /*use_file_locking=*/false, /*ignore_when_disabled=*/true);
  file = detail::fileId(H5Fopen(path.c_str(), H5F_ACC_RDONLY, access));
  H5Pclose(access);
  LOOM_INPUT_CHECK(file.valid(), "data file " << name
                                              << ": cannot be opened as HDF5, the file is "
                                                 "truncated or damaged ("
                                              << detail::hdf5ErrorText() << ")");
  const hid_t f = file.get();

  LOOM_INPUT_CHECK(detail::hasAttribute(f, "format"),
                   name << ": no root attribute 'format'; expected '" << kTokensFormatName
                        << "' (a token file written by `trainer prepare`)");
  const std::string format = detail::readString(f, "format", place);
  LOOM_INPUT_CHECK(format == kTokensFormatName, name << ": attribute 'format' is '" << format
                                                     << "', expected '" << kTokensFormatName
                                                     << "'");
  LOOM_INPUT_CHECK(detail::hasAttribute(f, "format_version"),
                   name << ": no root attribute 'format_version'");
  info.format_version = detail::readInt(f, "format_version", place);
  LOOM_INPUT_CHECK(info.format_version == kTokensFormatVersion,
                   name << ": format_version " << info.format_version
                        << " is not supported by this build (expected " << kTokensFormatVersion
                        << "); re-run `trainer prepare` with this version");
  LOOM_INPUT_CHECK(detail::hasAttribute(f, "vocab_size"),
                   name << ": no root attribute 'vocab_size'");
  info.vocab_size = detail::readInt(f, "vocab_size", place);
  LOOM_INPUT_CHECK(info.vocab_size > 0,
                   name << ": attribute 'vocab_size' is " << info.vocab_size << ", expected > 0");
  if (model_vocab_size > 0) {
    LOOM_INPUT_CHECK(info.vocab_size <= model_vocab_size,
                     name << ": tokenized with a vocabulary of " << info.vocab_size
                          << " ids but the model has " << model_vocab_size
                          << " embedding rows; prepare the data with the model's tokenizer");
  }
  auto optionalString = [&](const char* key) {
    return detail::hasAttribute(f, key) ? detail::readString(f, key, place) : std::string();
  };
  auto optionalInt = [&](const char* key, int64_t fallback) {
    return detail::hasAttribute(f, key) ? detail::readInt(f, key, place) : fallback;
  };
  info.tokenizer_hash = optionalString("tokenizer_hash");
  info.eos_id = optionalInt("eos_id", -1);
  info.pad_id = optionalInt("pad_id", -1);
  if (detail::hasAttribute(f, "source_files")) {
    info.source_files = detail::readStrings(f, "source_files", place);
  }
  info.template_name = optionalString("template");
  info.created = optionalString("created");
  string_attributes = detail::readSingleStrings(f, place);

  auto [offsets_ds, num_offsets] =
      detail::openArray(f, kOffsetsDataset, "int64 [num_samples + 1]", place);
  auto [loss_ds, num_samples] =
      detail::openArray(f, kLossTokensDataset, "int32 [num_samples]", place);
  auto [tokens_ds, num_tokens] = detail::openArray(f, kTokensDataset, "int32 [num_tokens]", place);
  auto [mask_ds, num_mask] = detail::openArray(f, kLossMaskDataset, "uint8 [num_tokens]", place);
  LOOM_INPUT_CHECK(num_offsets == num_samples + 1,
                   name << ": /offsets has " << num_offsets << " entries but /loss_tokens has "
                        << num_samples << "; expected num_samples + 1 = " << num_samples + 1);
  LOOM_INPUT_CHECK(num_tokens == num_mask, name << ": /tokens has " << num_tokens
                                                << " entries but /loss_mask has " << num_mask
                                                << "; expected equal lengths");
  offsets = detail::readWholeArray<int64_t>(offsets_ds.get(), H5T_NATIVE_INT64, num_offsets,
                                            kOffsetsDataset, place);
  loss_tokens = detail::readWholeArray<int32_t>(loss_ds.get(), H5T_NATIVE_INT32, num_samples,
                                                kLossTokensDataset, place);
  LOOM_INPUT_CHECK(offsets[0] == 0, name << ": /offsets[0] is " << offsets[0] << ", expected 0");
  for (int64_t i = 0; i < num_samples; ++i) {
    // Compared before subtracting: from 0, non-decreasing offsets are never negative, so
    // their differences cannot overflow.
    LOOM_INPUT_CHECK(offsets[i + 1] >= offsets[i],
                     name << ": sample " << i << ": /offsets decreases (" << offsets[i] << " then "
                          << offsets[i + 1] << "); offsets must be non-decreasing");
    const int64_t length = offsets[i + 1] - offsets[i];
    LOOM_INPUT_CHECK(loss_tokens[i] >= 0 && loss_tokens[i] <= std::max<int64_t>(length - 1, 0),
                     name << ": sample " << i << ": /loss_tokens is " << loss_tokens[i]
                          << " but the sample has " << length << " tokens (at most "
                          << std::max<int64_t>(length - 1, 0) << " targets)");
  }
  LOOM_INPUT_CHECK(offsets.back() == num_tokens, name << ": /offsets ends at " << offsets.back()
                                                      << " but /tokens has " << num_tokens
                                                      << " entries; expected equal");

  info.num_samples = num_samples;
  info.num_tokens = num_tokens;
  info.num_loss_tokens = std::accumulate(loss_tokens.begin(), loss_tokens.end(), int64_t{0});
  auto checkCount = [&](const char* key, int64_t actual) {
    if (!detail::hasAttribute(f, key)) return;
    const int64_t stored = detail::readInt(f, key, place);
    LOOM_INPUT_CHECK(stored == actual, name << ": attribute '" << key << "' says " << stored
                                            << " but the arrays hold " << actual);
  };
  checkCount("num_samples", info.num_samples);
  checkCount("num_tokens", info.num_tokens);
  checkCount("num_loss_tokens", info.num_loss_tokens);
  tokens = detail::withoutChunkCache(std::move(tokens_ds), f, kTokensDataset);
  loss_mask = detail::withoutChunkCache(std::move(mask_ds), f, kLossMaskDataset);
}

void Hdf5Dataset::Impl::validateAllSamples() const {
  constexpr int64_t kBlockTokens = int64_t{1} << 22;  // 16 MiB of ids + 4 MiB of mask a read
  std::vector<int32_t> tok;
  std::vector<uint8_t> mask;
  int64_t first = 0;
  while (first < numSamples()) {
    // Whole samples up to the block size (at least one, however long).
    int64_t last = first + 1;
    while (last < numSamples() && offsets[last + 1] - offsets[first] <= kBlockTokens) ++last;
    const int64_t begin = offsets[first];
    const int64_t count = offsets[last] - begin;
    tok.resize(static_cast<size_t>(count));
    mask.resize(static_cast<size_t>(count));
    detail::readRange(tokens.get(), H5T_NATIVE_INT32, begin, count, tok.data(), kTokensDataset,
                      place);
    detail::readRange(loss_mask.get(), H5T_NATIVE_UINT8, begin, count, mask.data(),
                      kLossMaskDataset, place);
    for (int64_t i = first; i < last; ++i) {
      const auto at = static_cast<size_t>(offsets[i] - begin);
      validateSample(i, tok.data() + at, mask.data() + at);
    }
    first = last;
  }
}

void Hdf5Dataset::Impl::validateSample(int64_t sample, const int32_t* tok,
                                       const uint8_t* mask) const {
  const int64_t length = offsets[sample + 1] - offsets[sample];
  int64_t targets = 0;
  for (int64_t t = 0; t < length; ++t) {
    LOOM_INPUT_CHECK(tok[t] >= 0 && tok[t] < info.vocab_size,
                     place.file << ": sample " << sample << " position " << t << ": token id "
                                << tok[t] << " is outside the vocabulary [0, " << info.vocab_size
                                << ")");
    LOOM_INPUT_CHECK(mask[t] <= 1, place.file << ": sample " << sample << " position " << t
                                              << ": /loss_mask value " << int{mask[t]}
                                              << ", expected 0 or 1");
    if (t > 0) targets += mask[t];
  }
  LOOM_INPUT_CHECK(targets == loss_tokens[sample],
                   place.file << ": sample " << sample << ": /loss_tokens says "
                              << loss_tokens[sample] << " but /loss_mask marks " << targets
                              << " targets after the first token");
}

namespace {

/// How long a damaged file may keep libhdf5 busy in the probe (seen: loops in its global-heap
/// parsing) before it is called damaged: two minutes, plus the time to read the whole file at
/// a slow 50 MB/s (the probe reads every token once).
std::chrono::seconds probeTimeout(const std::string& name) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(name, ec);
  return std::chrono::seconds(120 + (ec ? 0 : static_cast<int64_t>(size / 50'000'000)));
}

/// Opens the file first in a forked child (core/isolated_call). libhdf5 1.10 trusts the
/// addresses and indices inside a file: some damaged token files crash it (a SEGV in H5HG_read
/// reading a variable-length string attribute; tests/fuzz/libhdf5_faults).
/// In the child such a crash ends only the child, and the open is refused as a damaged file
/// (exit 2) instead of taking the process down. A file the child finds bad for another reason
/// is refused with the child's message, without opening it again; a good file is then opened
/// here. The child also reads every token once to check each sample, which the parent then
/// need not repeat; the added cost is one more open and index read (a fork, milliseconds).
/// `open` opens and checks the file, every sample included (on a throw-away Impl). True when
/// the child ran it and found the file good; false when the test hook kept it in-process.
/// Test hook LOOM_TEST_HDF5_IN_PROCESS=1 skips the child: the hdf5_index fuzz target runs
/// Loom's checks in its own instrumented process and tells libhdf5's faults apart itself.
bool openInChildFirst(const std::string& name, const std::function<void()>& open) {
  const char* in_process = std::getenv("LOOM_TEST_HDF5_IN_PROCESS");
  if (in_process != nullptr && std::string(in_process) == "1") return false;
  const std::chrono::seconds timeout = probeTimeout(name);
  const IsolatedOutcome outcome = runIsolated(
      [&] {
        // The child has only this thread, which holds the HDF5 mutex in the parent (the
        // caller locked it, so no other thread is inside libhdf5 at the fork); the child's
        // copy of the mutex names the parent's thread as owner and is re-created unlocked.
        new (&hdf5Mutex()) std::recursive_mutex();
        open();
      },
      timeout);
  switch (outcome.kind) {
    case IsolatedOutcome::Kind::kOk:
      return true;
    case IsolatedOutcome::Kind::kInputError:
      throw InputError(outcome.message);
    case IsolatedOutcome::Kind::kError:
      throw Error(outcome.message);
    case IsolatedOutcome::Kind::kTimedOut:
      throw InputError("data file " + name + ": libhdf5 did not finish opening it within " +
                       std::to_string(timeout.count()) +
                       " s; the file is damaged (not a complete token file written by "
                       "`trainer prepare`): prepare it again");
    case IsolatedOutcome::Kind::kCrashed:
      if (outcome.signal != 0) {
        throw InputError("data file " + name + ": libhdf5 crashed reading it (" +
                         describeCrash(outcome) +
                         "); the file is damaged (not a complete token file written by "
                         "`trainer prepare`): prepare it again");
      }
      // No signal: something in the child exited on its own (a sanitizer's report).
      LOOM_CHECK(false, "internal error, please report: opening " << name << " in a child "
                                                                  << "process ended with "
                                                                  << describeCrash(outcome));
  }
  return false;
}

}  // namespace

Hdf5Dataset::Hdf5Dataset(const std::filesystem::path& path, int64_t model_vocab_size)
    : impl_(std::make_unique<Impl>()) {
  auto lock = detail::lockHdf5();
  const bool probed = openInChildFirst(path.string(), [&] {
    Impl probe;
    probe.path = path;
    probe.place.file = path.string();
    probe.open(model_vocab_size);
    probe.validateAllSamples();
  });
  impl_->path = path;
  impl_->place.file = path.string();
  impl_->open(model_vocab_size);
  if (!probed) impl_->validateAllSamples();
}

Hdf5Dataset::~Hdf5Dataset() = default;
Hdf5Dataset::Hdf5Dataset(Hdf5Dataset&&) noexcept = default;
Hdf5Dataset& Hdf5Dataset::operator=(Hdf5Dataset&&) noexcept = default;

const std::filesystem::path& Hdf5Dataset::path() const { return impl_->path; }
const Hdf5DatasetInfo& Hdf5Dataset::info() const { return impl_->info; }
int64_t Hdf5Dataset::numSamples() const { return impl_->numSamples(); }
int64_t Hdf5Dataset::numTokens() const { return impl_->offsets.back(); }
const std::vector<int64_t>& Hdf5Dataset::offsets() const { return impl_->offsets; }
const std::vector<int32_t>& Hdf5Dataset::lossTokens() const { return impl_->loss_tokens; }

int64_t Hdf5Dataset::sampleLength(int64_t i) const {
  LOOM_CHECK(i >= 0 && i < numSamples(),
             "sample " << i << " out of range [0, " << numSamples() << ") of " << impl_->path);
  return impl_->offsets[i + 1] - impl_->offsets[i];
}

std::vector<int64_t> Hdf5Dataset::lengths() const {
  std::vector<int64_t> out(static_cast<size_t>(numSamples()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = impl_->offsets[i + 1] - impl_->offsets[i];
  return out;
}

std::vector<int64_t> Hdf5Dataset::lossTokensWithin(int64_t max_length) const {
  LOOM_CHECK(max_length > 0, "max_length must be > 0, got " << max_length);
  const Impl& s = *impl_;
  std::vector<int64_t> out(s.loss_tokens.begin(), s.loss_tokens.end());
  std::vector<uint8_t> mask;
  auto lock = detail::lockHdf5();
  for (int64_t i = 0; i < s.numSamples(); ++i) {
    if (s.offsets[i + 1] - s.offsets[i] <= max_length) continue;
    mask.resize(static_cast<size_t>(max_length));
    detail::readRange(s.loss_mask.get(), H5T_NATIVE_UINT8, s.offsets[i], max_length, mask.data(),
                      kLossMaskDataset, s.place);
    int64_t targets = 0;
    for (int64_t t = 1; t < max_length; ++t) targets += mask[t] ? 1 : 0;
    out[i] = targets;
  }
  return out;
}

std::optional<std::string> Hdf5Dataset::stringAttribute(const std::string& name) const {
  auto found = impl_->string_attributes.find(name);
  if (found == impl_->string_attributes.end()) return std::nullopt;
  return found->second;
}

Sample Hdf5Dataset::readSample(int64_t i) const {
  SampleBatch batch = readSamples({i});
  Sample sample;
  sample.index = i;
  sample.tokens = std::move(batch.tokens);
  sample.loss_mask = std::move(batch.loss_mask);
  return sample;
}

SampleBatch Hdf5Dataset::readSamples(const std::vector<int64_t>& indices) const {
  const Impl& s = *impl_;
  for (int64_t i : indices) {
    LOOM_CHECK(i >= 0 && i < s.numSamples(),
               "sample " << i << " out of range [0, " << s.numSamples() << ") of " << s.path);
  }
  // Distinct samples in file order; offsets are non-decreasing, so index order is file order.
  std::vector<int64_t> unique = indices;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());

  std::vector<int64_t> staged_at(unique.size());  // [u] start of unique[u] in the staging buffers
  int64_t staged = 0;
  for (size_t u = 0; u < unique.size(); ++u) {
    staged_at[u] = staged;
    staged += s.offsets[unique[u] + 1] - s.offsets[unique[u]];
  }
  std::vector<int32_t> tokens(static_cast<size_t>(staged));  // [staged]
  std::vector<uint8_t> mask(static_cast<size_t>(staged));    // [staged]
  // Runs of samples that lie back to back in the file become one block each.
  std::vector<std::pair<int64_t, int64_t>> blocks;  // (start, count) in file order
  for (int64_t id : unique) {
    const int64_t start = s.offsets[id];
    const int64_t count = s.offsets[id + 1] - start;
    if (count == 0) continue;
    if (!blocks.empty() && blocks.back().first + blocks.back().second == start) {
      blocks.back().second += count;
    } else {
      blocks.emplace_back(start, count);
    }
  }
  if (staged > 0) {
    auto lock = detail::lockHdf5();
    detail::readBlocks(s.tokens.get(), H5T_NATIVE_INT32, sizeof(int32_t), blocks, tokens.data(),
                       kTokensDataset, s.place);
    detail::readBlocks(s.loss_mask.get(), H5T_NATIVE_UINT8, sizeof(uint8_t), blocks, mask.data(),
                       kLossMaskDataset, s.place);
  }
  for (size_t u = 0; u < unique.size(); ++u) {
    s.validateSample(unique[u], tokens.data() + staged_at[u], mask.data() + staged_at[u]);
  }

  SampleBatch batch;
  batch.sample_ids = indices;
  batch.offsets.reserve(indices.size() + 1);
  batch.offsets.push_back(0);
  for (int64_t i : indices)
    batch.offsets.push_back(batch.offsets.back() + s.offsets[i + 1] - s.offsets[i]);
  if (indices == unique) {  // the common case: ascending distinct ids, no reordering needed
    batch.tokens = std::move(tokens);
    batch.loss_mask = std::move(mask);
    return batch;
  }
  batch.tokens.resize(static_cast<size_t>(batch.offsets.back()));
  batch.loss_mask.resize(static_cast<size_t>(batch.offsets.back()));
  for (size_t j = 0; j < indices.size(); ++j) {
    const size_t u = static_cast<size_t>(
        std::lower_bound(unique.begin(), unique.end(), indices[j]) - unique.begin());
    const int64_t length = batch.offsets[j + 1] - batch.offsets[j];
    std::copy_n(tokens.begin() + staged_at[u], length, batch.tokens.begin() + batch.offsets[j]);
    std::copy_n(mask.begin() + staged_at[u], length, batch.loss_mask.begin() + batch.offsets[j]);
  }
  return batch;
}

}  // namespace loom
