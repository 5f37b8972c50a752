"""A case-insensitive, case-preserving file system for tests (as macOS APFS or an SMB share behave),
mounted with FUSE over a backing directory: ``python casefs.py BACKING MOUNTPOINT``.

Each path component is looked up in the backing directory without regard to case; a name that does
not exist yet is created as written. Reports the backing inode numbers (``use_ino``), so ``.ENV``
and ``.env`` are the same file to stat as well. The kernel caches nothing (timeouts 0), so every
lookup comes here. Used where the kernel has no vfat and no ext4 casefold (CONFIG_UNICODE).
"""

from __future__ import annotations

import errno
import os
import sys

import mfusepy as fuse


class CaseInsensitive(fuse.Operations):
    use_ns = True

    def __init__(self, root: str):
        self.root = os.path.realpath(root)

    def _real(self, path: str) -> str:
        real = self.root
        for part in [p for p in path.split("/") if p]:
            candidate = os.path.join(real, part)
            if not os.path.lexists(candidate):
                try:
                    names = os.listdir(real)
                except (FileNotFoundError, NotADirectoryError):
                    names = []
                folded = part.lower()
                match = next((n for n in names if n.lower() == folded), None)
                candidate = os.path.join(real, match if match is not None else part)
            real = candidate
        return real

    def _err(self, exc: OSError) -> fuse.FuseOSError:
        return fuse.FuseOSError(exc.errno or errno.EIO)

    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise self._err(exc) from None
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_blocks")
        out = {k: getattr(st, k) for k in keys}
        out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return out

    def readdir(self, path, fh):
        # With use_ino the entries carry their inode numbers (readdir(3) skips an entry whose is 0).
        real = self._real(path)
        out = []
        for name in (".", "..", *os.listdir(real)):
            st = os.lstat(os.path.join(real, name))
            out.append((name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0))
        return out

    def readlink(self, path):
        return os.readlink(self._real(path))

    def access(self, path, amode):
        if not os.access(self._real(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            raise self._err(exc) from None

    def chmod(self, path, mode):
        return self._call(os.chmod, self._real(path), mode)

    def chown(self, path, uid, gid):
        return self._call(os.lchown, self._real(path), uid, gid)

    def mkdir(self, path, mode):
        return self._call(os.mkdir, self._real(path), mode)

    def rmdir(self, path):
        return self._call(os.rmdir, self._real(path))

    def unlink(self, path):
        return self._call(os.unlink, self._real(path))

    def symlink(self, target, source):
        return self._call(os.symlink, source, self._real(target))

    def link(self, target, source):
        return self._call(os.link, self._real(source), self._real(target))

    def rename(self, old, new):
        src, dst = self._real(old), self._real(new)
        if os.path.lexists(dst) and os.path.samestat(os.lstat(src), os.lstat(dst)) and src != dst:
            return self._call(os.rename, src, os.path.join(os.path.dirname(dst), os.path.basename(new)))
        return self._call(os.rename, src, dst)

    def utimens(self, path, times=None):
        return self._call(lambda: os.utime(self._real(path), ns=times, follow_symlinks=False))

    def truncate(self, path, length, fh=None):
        if fh is not None:
            return self._call(os.ftruncate, fh, length)
        return self._call(os.truncate, self._real(path), length)

    def open(self, path, flags):
        return self._call(os.open, self._real(path), flags)

    def create(self, path, mode, fi=None):
        return self._call(os.open, self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        return self._call(os.pread, fh, size, offset)

    def write(self, path, data, offset, fh):
        return self._call(os.pwrite, fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        return self._call(os.fsync, fh)

    def release(self, path, fh):
        return self._call(os.close, fh)

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag")
        return {k: getattr(st, k) for k in (*keys, "f_frsize", "f_namemax")}


if __name__ == "__main__":
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fuse.FUSE(
        CaseInsensitive(backing),
        mountpoint,
        foreground=True,
        nothreads=True,
        use_ino=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )
