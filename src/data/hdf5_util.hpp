#pragma once
// HDF5 plumbing shared by the token file's writer and reader (not a public header): the
// process-wide lock, error text, and owned identifiers.

#include <hdf5.h>  // C API: Debian's serial libhdf5 1.10

#include <mutex>
#include <string>
#include <utility>

#include "loom/data/hdf5_dataset.hpp"

namespace loom::detail {

/// Takes hdf5Mutex() and, the first time on a thread, switches off HDF5's automatic
/// printing of its error stack: Loom reports errors itself (with the file and the place),
/// per thread because a thread-safe libhdf5 keeps that setting per thread.
std::unique_lock<std::recursive_mutex> lockHdf5();

/// The innermost message on HDF5's error stack (e.g. "truncated file: eof = ..."); clears it.
std::string hdf5ErrorText();

/// An owned HDF5 identifier, closed with the function matching its kind.
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~H5Id() { reset(); }
  H5Id(H5Id&& other) noexcept : id_(std::exchange(other.id_, -1)), closer_(other.closer_) {}
  H5Id& operator=(H5Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, -1);
      closer_ = other.closer_;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0) {
      std::lock_guard<std::recursive_mutex> lock(hdf5Mutex());
      closer_(id_);
      id_ = -1;
    }
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

inline H5Id fileId(hid_t id) { return {id, H5Fclose}; }
inline H5Id datasetId(hid_t id) { return {id, H5Dclose}; }
inline H5Id spaceId(hid_t id) { return {id, H5Sclose}; }
inline H5Id typeId(hid_t id) { return {id, H5Tclose}; }
inline H5Id attributeId(hid_t id) { return {id, H5Aclose}; }
inline H5Id plistId(hid_t id) { return {id, H5Pclose}; }

}  // namespace loom::detail
