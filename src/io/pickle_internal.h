/* What the opcode interpreter (pickle_read.c) and the state-dict semantics of its few allowed
 * globals (pickle_torch.c) share; not part of the API, which is pickle_read.h. */
#ifndef ZT_IO_PICKLE_INTERNAL_H
#define ZT_IO_PICKLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/pickle_read.h"

typedef enum pv_kind {
    PV_NONE,
    PV_BOOL,
    PV_INT,
    PV_STR,
    PV_TUPLE,
    PV_LIST,
    PV_DICT, /* a dict or OrderedDict: items alternate key, value */
    PV_GLOBAL,
    PV_STORAGE,
    PV_TENSOR,
} pv_kind;

/* A value of the pickle machine. Values may be shared (the memo) and even cyclic (a dict set
 * into itself), so nothing walks them recursively; the machine frees them all at the end. */
typedef struct pv {
    pv_kind kind;
    int64_t integer;  /* BOOL, INT; GLOBAL: its pickle_global id; STORAGE, TENSOR: an index */
    const char *text; /* STR: UTF-8 inside the pickle, not NUL-terminated */
    size_t text_len;
    struct pv **items; /* TUPLE, LIST, DICT */
    size_t n_items, cap_items;
} pv;

/* Globals that are not storage types (those are 0, 1, ... into pickle_storage_types). */
enum { PICKLE_ORDERED_DICT = -1, PICKLE_REBUILD_TENSOR_V2 = -2, PICKLE_REBUILD_PARAMETER = -3 };

typedef struct pickle_vm {
    const char *what;
    const uint8_t *bytes;
    size_t n, pos;
    size_t op_at; /* the offset of the opcode being run, for messages */
    pv **stack;
    size_t n_stack, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    pv **memo;
    size_t cap_memo, memo_len;
    pv **all; /* every value made, to free them */
    size_t n_all, cap_all;
    zt_pickle_storage *storages;
    size_t n_storages, cap_storages;
    zt_pickle_tensor *tensors; /* every tensor rebuilt, nameless until the dict names them */
    size_t n_tensors, cap_tensors;
} pickle_vm;

/* "<what>: byte <op_at>: <message>" as the last error. */
zt_status pickle_error(const pickle_vm *vm, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Grows *array (of element bytes each, *cap of them) to hold at least need; false on failure. */
int pickle_grow(void *array, size_t *cap, size_t need, size_t element);

/* A new value owned by the machine; NULL (with the error set) when memory runs out. */
pv *pv_new(pickle_vm *vm, pv_kind kind);
const char *pv_kind_name(pv_kind kind);

/* ---- pickle_torch.c: what the allowed globals mean ---- */

zt_status pickle_global(pickle_vm *vm, const char *module, size_t module_len, const char *name,
                        size_t name_len, pv **out);
zt_status pickle_reduce(pickle_vm *vm, const pv *callable, const pv *args, pv **out);
zt_status pickle_persistent_load(pickle_vm *vm, const pv *pid, pv **out);
zt_status pickle_build(const pickle_vm *vm, const pv *object, const pv *state);
/* The finished pickle's value as a state dict; moves the storages out of vm. */
zt_status pickle_collect(pickle_vm *vm, const pv *root, zt_pickle_state_dict *out);

#endif
