# Optional AnnData (.h5ad) support through the HDF5 C library: target sakura::hdf5.
