"""What the file-system modules (file, yara, sshkey, pkg) share: reading below the root.

- ``rootpath``: a path as seen from inside the investigated root -> the real path, never out of it;
- ``dirs``: the descriptor walk of one tree (no PATH_MAX limit, nothing followed, loops ended);
- ``mounts``: the pseudo and network filesystems the walk never enters;
- ``walk``: every non-directory entry below some paths, for modules needing no more;
- ``filters``: the metadata filters (name, path, size, age, mode) as predicates;
- ``reader``: one read of a file feeding its digests and content regexes;
- ``params``: the walk and filter parameters, declared once for every module that walks.
"""
