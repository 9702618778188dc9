# Sourced by tools/device_check.sh: makes the unpacked bundle of tools/device_bundle.sh usable.
#   source tools/device_env.sh ROOT PYTHON
# ROOT holds bin/ (Loom's binaries) and usr/ (Open MPI, PMIx, HDF5, ... in their /usr layout);
# PYTHON is the machine's python3 with torch. Defines ROOT/wrap/<binary>: each sets
# LD_LIBRARY_PATH to the bundle's libraries, then torch's and its CUDA/NCCL wheels', and execs
# the binary. Only Loom's processes (and the Open MPI daemon they start) see those libraries:
# ROOT/wrap/python3 puts the caller's LD_LIBRARY_PATH back, so a test that starts Python (the
# transformers reference) runs it on the machine's own libraries.
loom_root=$1
loom_python=$2
loom_multiarch=$loom_root/usr/lib/x86_64-linux-gnu
loom_site=$("$loom_python" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
loom_ldp=$loom_multiarch:$loom_multiarch/openmpi/lib:$loom_multiarch/pmix2/lib:$loom_site/torch/lib
for d in nvidia/cu13/lib nvidia/cuda_runtime/lib nvidia/nccl/lib; do
  [[ -d "$loom_site/$d" ]] && loom_ldp=$loom_ldp:$loom_site/$d
done
# Open MPI and PMIx find their plugins, help texts and daemon under the relocated prefix.
export OPAL_PREFIX=$loom_root/usr
export PMIX_INSTALL_PREFIX=$loom_multiarch/pmix2
export PATH=$loom_root/usr/bin:$PATH
# Debian's /etc/openmpi/openmpi-mca-params.conf, which does not travel (those plugins did not).
export OMPI_MCA_btl_base_warn_component_unused=0 OMPI_MCA_mtl='^ofi' OMPI_MCA_pml='^ucx'
export OMPI_MCA_btl='^uct,openib,ofi' OMPI_MCA_osc='^ucx,pt2pt'
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LOOM_DEVICE_CALLER_LDP=${LD_LIBRARY_PATH:-}
mkdir -p "$loom_root/wrap"
for b in "$loom_root"/bin/* "$loom_root/usr/bin/orted" "$loom_root/usr/bin/mpirun"; do
  cat >"$loom_root/wrap/$(basename "$b")" <<EOF
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$loom_ldp\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$b" "\$@"
EOF
done
cat >"$loom_root/wrap/python3" <<EOF
#!/usr/bin/env bash
export LD_LIBRARY_PATH="\$LOOM_DEVICE_CALLER_LDP"
[[ -n "\$LD_LIBRARY_PATH" ]] || unset LD_LIBRARY_PATH
exec "$loom_python" "\$@"
EOF
cat >"$loom_root/wrap/ldd" <<EOF
#!/usr/bin/env bash
LD_LIBRARY_PATH="$loom_ldp" exec ldd "\$@"
EOF
chmod +x "$loom_root"/wrap/*
