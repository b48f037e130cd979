/* Read many small files of one directory into one buffer, in one call from Python.
 *
 * modules/fs/batch.py holds the contract and the pure-Python twin this must stay equal to
 * (tests/test_modules_fs_batch.py runs both on the same trees). Per file: openat(2) of the
 * single name relative to the directory's descriptor with O_NOFOLLOW|O_NONBLOCK (never through a
 * symlink, never blocking on a FIFO swapped in), fstat(2), a regular file only, at most `window`
 * bytes read, close(2). What Python would spend per file on four calls and a stat object is
 * spent here once per batch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* The codes of the odd entries, as in batch.py. */
enum { ERROR = 1, NOT_REGULAR = 2, TOO_BIG = 3, LARGE = 4 };
#define META 5 /* int64 per entry: mode, size, mtime, ino, dev */
/* As FILE_FLAGS in modules/fs/dirs.py: never through a symlink, never blocking. */
#define FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

static PyObject *name_str;

/* Read one open file at buf[0:window]; the bytes read, or -errno. Stops at fstat's size
 * without a last read (a regular file), else at the end of file or window bytes. */
static Py_ssize_t read_window(int fd, char *buf, Py_ssize_t window, Py_ssize_t size)
{
    Py_ssize_t total = 0;
    while (total < window) {
        ssize_t got = read(fd, buf + total, (size_t)(window - total));
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            break;
        total += got;
        if (size > 0 && total >= size)
            break;
    }
    return total;
}

static int add_odd(PyObject *odd, Py_ssize_t index, int code, long long value)
{
    PyObject *item = Py_BuildValue("(niL)", index, code, value);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(odd, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *read_files(PyObject *self, PyObject *args)
{
    int dir_fd;
    PyObject *entries;
    Py_ssize_t start, window;
    long long max_size;
    Py_buffer buf, meta;
    if (!PyArg_ParseTuple(args, "iO!nw*nLw*", &dir_fd, &PyList_Type, &entries, &start, &buf,
                          &window, &max_size, &meta))
        return NULL;
    PyObject *starts = PyList_New(0), *odd = PyList_New(0), *result = NULL;
    Py_ssize_t off = 0, end = -1, nread = 0, i = start;
    char *data = buf.buf;
    int64_t *info = meta.buf;
    Py_ssize_t slots = meta.len / (Py_ssize_t)(META * sizeof(int64_t));
    if (starts == NULL || odd == NULL)
        goto done;
    if (window <= 0 || start < 0 || buf.len <= window || slots < 1) {
        PyErr_SetString(PyExc_ValueError, "no room for a window and its newline, or a stat");
        goto done;
    }
    /* The list's length is read again each time: another thread may change it while the GIL
     * is released around the system calls. */
    for (; i < PyList_GET_SIZE(entries) && i - start < slots && off + window + 1 <= buf.len; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i), *name = NULL, *encoded = NULL;
        name = PyUnicode_Check(entry) ? Py_NewRef(entry) : PyObject_GetAttr(entry, name_str);
        if (name == NULL || !PyUnicode_FSConverter(name, &encoded)) {
            Py_XDECREF(name);
            goto done;
        }
        Py_DECREF(name);
        PyObject *at = PyLong_FromSsize_t(off);
        if (at == NULL || PyList_Append(starts, at) < 0) {
            Py_XDECREF(at);
            Py_DECREF(encoded);
            goto done;
        }
        Py_DECREF(at);
        int code = 0, fd;
        long long value = 0;
        Py_ssize_t got = 0;
        struct stat st;
        Py_BEGIN_ALLOW_THREADS
        fd = openat(dir_fd, PyBytes_AS_STRING(encoded), FLAGS);
        if (fd < 0) {
            code = ERROR, value = errno;
        } else {
            if (fstat(fd, &st) < 0)
                code = ERROR, value = errno;
            else if (!S_ISREG(st.st_mode))
                code = NOT_REGULAR;
            else if (max_size >= 0 && st.st_size > max_size)
                code = TOO_BIG;
            else if (st.st_size >= window)
                code = LARGE;
            else {
                got = read_window(fd, data + off, window, st.st_size);
                if (got < 0)
                    code = ERROR, value = -got, got = 0;
                else if (got >= window)
                    code = LARGE;  /* grew past its size: read again by the general path */
            }
            close(fd);
        }
        Py_END_ALLOW_THREADS
        Py_DECREF(encoded);
        nread += got;
        if (code != 0) {
            if (add_odd(odd, i, code, value) < 0)
                goto done;
            continue;
        }
        int64_t *slot = info + (i - start) * META;
        /* Whole seconds toward zero, as Python's int(st_mtime) gives them before 1970 too. */
        int64_t mtime = st.st_mtim.tv_sec + (st.st_mtim.tv_sec < 0 && st.st_mtim.tv_nsec > 0);
        slot[0] = st.st_mode, slot[1] = st.st_size, slot[2] = mtime;
        slot[3] = (int64_t)st.st_ino, slot[4] = (int64_t)st.st_dev;
        if (got > 0) {
            if (data[off + got - 1] != '\n')
                data[off + got++] = '\n';
            end = off + got - 1;
            off += got;
        }
    }
    result = Py_BuildValue("nnOOn", i, end, starts, odd, nread);
done:
    Py_XDECREF(starts);
    Py_XDECREF(odd);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&meta);
    return result;
}

static PyMethodDef methods[] = {
    {"read_files", read_files, METH_VARARGS,
     "read_files(dir_fd, entries, start, buf, window, max_size, meta) -> "
     "(next, end, starts, odd, nread); see modules.fs.batch"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_batchread", NULL, -1, methods};

PyMODINIT_FUNC PyInit__batchread(void)
{
    name_str = PyUnicode_InternFromString("name");
    if (name_str == NULL)
        return NULL;
    return PyModule_Create(&module);
}
