#include "hdf5_util.hpp"

namespace loom {

std::recursive_mutex& hdf5Mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

namespace detail {

std::unique_lock<std::recursive_mutex> lockHdf5() {
  std::unique_lock<std::recursive_mutex> lock(hdf5Mutex());
  thread_local bool quiet = false;
  if (!quiet) {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
  return lock;
}

namespace {

herr_t collectErrorDescription(unsigned, const H5E_error2_t* error, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (error->desc && *error->desc) *out = error->desc;  // keep the innermost (most specific)
  return 0;
}

}  // namespace

std::string hdf5ErrorText() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collectErrorDescription, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no detail from HDF5" : text;
}

}  // namespace detail
}  // namespace loom
