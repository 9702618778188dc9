# Every dependency of Loom, found on the machine: nothing is downloaded at configure time.
# tools/setup.sh installs them (Debian packages + the project virtualenv with torch).

# --- Python of the project virtualenv: gives libtorch's CMake config and runs reference tests.
set(LOOM_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "Python of the virtualenv holding torch (tools/setup.sh makes it)")
if(NOT EXISTS "${LOOM_PYTHON}")
  message(FATAL_ERROR "No Python at LOOM_PYTHON=${LOOM_PYTHON}. Run tools/setup.sh first, "
                      "or pass -DLOOM_PYTHON=/path/to/python with torch installed.")
endif()
execute_process(
  COMMAND "${LOOM_PYTHON}" -c "import torch, os; print(torch.utils.cmake_prefix_path); print(os.path.dirname(os.path.dirname(torch.__file__)))"
  OUTPUT_VARIABLE _loom_torch_out RESULT_VARIABLE _loom_torch_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _loom_torch_rc EQUAL 0)
  message(FATAL_ERROR "${LOOM_PYTHON} cannot import torch; run tools/setup.sh")
endif()
string(REPLACE "\n" ";" _loom_torch_out "${_loom_torch_out}")
list(GET _loom_torch_out 0 LOOM_TORCH_CMAKE_PREFIX)
list(GET _loom_torch_out 1 LOOM_SITE_PACKAGES)
list(APPEND CMAKE_PREFIX_PATH "${LOOM_TORCH_CMAKE_PREFIX}")

if(LOOM_WITH_CUDA)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()

if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;8.6;9.0")
endif()
# libtorch from the wheel. A CUDA wheel's config looks for the CUDA toolkit itself.
find_package(Torch REQUIRED)
# TorchConfig puts its flags into TORCH_CXX_FLAGS (the _GLIBCXX_USE_CXX11_ABI choice).
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")
if(LOOM_WITH_CUDA)
  # Our own kernels (set after Torch: its config warns when this is set before it), for
  # every architecture the linked libtorch was built for (torch._C._cuda_getArchFlags(),
  # known without a GPU), so a card torch runs on runs Loom's kernels too. Real code for
  # each, PTX of the newest for later cards. LOOM_CUDA_ARCHITECTURES overrides.
  if(NOT LOOM_CUDA_ARCHITECTURES)
    execute_process(
      COMMAND "${LOOM_PYTHON}" -c "import torch; print(torch._C._cuda_getArchFlags() if torch.version.cuda else '')"
      OUTPUT_VARIABLE _loom_arch_flags RESULT_VARIABLE _loom_arch_rc ERROR_QUIET
      OUTPUT_STRIP_TRAILING_WHITESPACE)
    string(REGEX MATCHALL "sm_[0-9]+" _loom_sms "${_loom_arch_flags}")
    set(LOOM_CUDA_ARCHITECTURES "")
    foreach(_sm IN LISTS _loom_sms)
      string(REPLACE "sm_" "" _num "${_sm}")
      list(APPEND LOOM_CUDA_ARCHITECTURES "${_num}-real")
    endforeach()
    if(LOOM_CUDA_ARCHITECTURES)
      list(GET _loom_sms -1 _last)
      string(REPLACE "sm_" "" _last "${_last}")
      list(APPEND LOOM_CUDA_ARCHITECTURES "${_last}-virtual")
    else()
      set(LOOM_CUDA_ARCHITECTURES 80 86 90)
    endif()
  endif()
  set(CMAKE_CUDA_ARCHITECTURES ${LOOM_CUDA_ARCHITECTURES})
  message(STATUS "Loom CUDA kernels for: ${CMAKE_CUDA_ARCHITECTURES}")
endif()

find_package(MPI REQUIRED COMPONENTS C)
# Only MPI's C API: keep Open MPI's deprecated C++ bindings out of every translation unit.
target_compile_definitions(MPI::MPI_C INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(yaml-cpp REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
find_package(PCRE2 REQUIRED)
find_package(Utf8proc REQUIRED)
if(LOOM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(LOOM_WITH_CUDA)
  find_package(NCCL REQUIRED)
endif()
# One CUDA runtime and one NCCL per process: those libtorch was built with (the nvidia
# wheels beside torch) must be found before the toolkit's, which carry the same sonames.
# Also with LOOM_WITH_CUDA=OFF: a CUDA torch wheel's libtorch_cuda.so still needs them at
# link time (-rpath-link) and at run time.
foreach(_dir "${LOOM_SITE_PACKAGES}/nvidia/cu13/lib" "${LOOM_SITE_PACKAGES}/nvidia/cuda_runtime/lib"
             "${LOOM_SITE_PACKAGES}/nvidia/nccl/lib")
  if(EXISTS "${_dir}")
    list(APPEND CMAKE_BUILD_RPATH "${_dir}")
    add_link_options("LINKER:-rpath-link,${_dir}")
  endif()
endforeach()

# yaml-cpp 0.7's config names its target yaml-cpp; later ones yaml-cpp::yaml-cpp.
if(TARGET yaml-cpp::yaml-cpp)
  set(LOOM_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(LOOM_YAML_TARGET yaml-cpp)
endif()
