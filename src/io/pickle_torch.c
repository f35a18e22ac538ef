/* What the restricted unpickler's allowed globals mean (pickle_read.h). torch.save pickles a
 * state dict as collections.OrderedDict() filled by SETITEMS, each tensor as
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks), and each
 * storage as the persistent id ('storage', torch.FloatStorage, key, location, numel). Those
 * calls are reproduced as data here; nothing is ever called, and any other global is refused. */
#include "io/pickle_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/safetensors_internal.h"

typedef struct storage_type {
    const char *class_name; /* in module torch */
    const char *dtype;      /* as safetensors spells it */
    int element_bytes;
} storage_type;

static const storage_type pickle_storage_types[] = {
    {"FloatStorage", "F32", 4},  {"HalfStorage", "F16", 2}, {"BFloat16Storage", "BF16", 2},
    {"DoubleStorage", "F64", 8}, {"LongStorage", "I64", 8}, {"IntStorage", "I32", 4},
    {"ShortStorage", "I16", 2},  {"CharStorage", "I8", 1},  {"ByteStorage", "U8", 1},
    {"BoolStorage", "BOOL", 1},
};
enum { N_STORAGE_TYPES = sizeof pickle_storage_types / sizeof pickle_storage_types[0] };

enum { PICKLE_MAX_KEY = 64, PICKLE_MAX_TENSOR_NAME = 1024 };

static int same_text(const char *text, size_t len, const char *literal) {
    return strlen(literal) == len && memcmp(text, literal, len) == 0;
}

zt_status pickle_global(pickle_vm *vm, const char *module, size_t module_len, const char *name,
                        size_t name_len, pv **out) {
    int64_t id = 0;
    int found = 0;
    if (same_text(module, module_len, "collections") && same_text(name, name_len, "OrderedDict"))
        id = PICKLE_ORDERED_DICT, found = 1;
    else if (same_text(module, module_len, "torch._utils") &&
             same_text(name, name_len, "_rebuild_tensor_v2"))
        id = PICKLE_REBUILD_TENSOR_V2, found = 1;
    else if (same_text(module, module_len, "torch._utils") &&
             same_text(name, name_len, "_rebuild_parameter"))
        id = PICKLE_REBUILD_PARAMETER, found = 1;
    else if (same_text(module, module_len, "torch"))
        for (int i = 0; i < N_STORAGE_TYPES && !found; i++)
            if (same_text(name, name_len, pickle_storage_types[i].class_name)) id = i, found = 1;
    if (!found) {
        /* STACK_GLOBAL's strings are arbitrary bytes: the message shows them tamed. */
        char shown[2][80];
        const char *parts[2] = {module, name};
        size_t lens[2] = {module_len, name_len};
        for (int p = 0; p < 2; p++) {
            size_t k = 0;
            for (; k < lens[p] && k + 1 < sizeof shown[p]; k++)
                shown[p][k] = parts[p][k] >= 0x20 && parts[p][k] < 0x7f ? parts[p][k] : '?';
            shown[p][k] = '\0';
        }
        return pickle_error(vm,
                            "refusing global '%s.%s': a state dict uses only "
                            "torch._utils._rebuild_tensor_v2, torch.*Storage and "
                            "collections.OrderedDict, and loading this would run other code",
                            shown[0], shown[1]);
    }
    pv *global = pv_new(vm, PV_GLOBAL);
    if (!global) return ZT_ERR_NOMEM;
    global->integer = id;
    *out = global;
    return ZT_OK;
}

static const char *global_name(int64_t id) {
    if (id == PICKLE_ORDERED_DICT) return "collections.OrderedDict";
    if (id == PICKLE_REBUILD_TENSOR_V2) return "torch._utils._rebuild_tensor_v2";
    if (id == PICKLE_REBUILD_PARAMETER) return "torch._utils._rebuild_parameter";
    return pickle_storage_types[id].class_name;
}

/* A size or stride tuple of non-negative ints. */
static zt_status read_dims(pickle_vm *vm, const pv *tuple, const char *what, int64_t *dims,
                           int *n_dims) {
    if (tuple->kind != PV_TUPLE)
        return pickle_error(vm, "tensor %s is a %s, not a tuple", what, pv_kind_name(tuple->kind));
    if (tuple->n_items > ZT_PICKLE_MAX_DIMS)
        return pickle_error(vm, "tensor %s has %zu dimensions, at most %d allowed", what,
                            tuple->n_items, ZT_PICKLE_MAX_DIMS);
    for (size_t d = 0; d < tuple->n_items; d++) {
        const pv *item = tuple->items[d];
        if (item->kind != PV_INT || item->integer < 0)
            return pickle_error(vm, "tensor %s item %zu is not a non-negative int", what, d);
        dims[d] = item->integer;
    }
    *n_dims = (int)tuple->n_items;
    return ZT_OK;
}

static zt_status rebuild_tensor(pickle_vm *vm, const pv *args, pv **out) {
    pv *const *a = args->items;
    if (args->n_items != 6 && args->n_items != 7)
        return pickle_error(vm, "_rebuild_tensor_v2 with %zu arguments (6 or 7 expected)",
                            args->n_items);
    if (a[0]->kind != PV_STORAGE)
        return pickle_error(vm, "_rebuild_tensor_v2 of a %s, not a storage",
                            pv_kind_name(a[0]->kind));
    if (a[1]->kind != PV_INT || a[1]->integer < 0)
        return pickle_error(vm, "tensor storage offset is not a non-negative int");
    if (a[4]->kind != PV_BOOL || a[5]->kind != PV_DICT ||
        (args->n_items == 7 && a[6]->kind != PV_NONE && a[6]->kind != PV_DICT))
        return pickle_error(vm, "_rebuild_tensor_v2's requires_grad, hooks or metadata "
                                "argument is not a bool, a dict and None or a dict");
    zt_pickle_tensor tensor;
    memset(&tensor, 0, sizeof tensor);
    int n_strides = 0;
    ZT_TRY(read_dims(vm, a[2], "size", tensor.shape, &tensor.n_dims));
    ZT_TRY(read_dims(vm, a[3], "stride", tensor.stride, &n_strides));
    if (n_strides != tensor.n_dims)
        return pickle_error(vm, "tensor size has %d dimensions but its stride %d", tensor.n_dims,
                            n_strides);
    tensor.storage = (int)a[0]->integer;
    tensor.storage_offset = a[1]->integer;
    if (!pickle_grow(&vm->tensors, &vm->cap_tensors, vm->n_tensors + 1, sizeof *vm->tensors))
        return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
    pv *value = pv_new(vm, PV_TENSOR);
    if (!value) return ZT_ERR_NOMEM;
    value->integer = (int64_t)vm->n_tensors;
    vm->tensors[vm->n_tensors++] = tensor;
    *out = value;
    return ZT_OK;
}

zt_status pickle_reduce(pickle_vm *vm, const pv *callable, const pv *args, pv **out) {
    if (callable->kind != PV_GLOBAL)
        return pickle_error(vm, "REDUCE calls a %s; only the allowed globals are called",
                            pv_kind_name(callable->kind));
    if (args->kind != PV_TUPLE)
        return pickle_error(vm, "REDUCE of %s with a %s for arguments",
                            global_name(callable->integer), pv_kind_name(args->kind));
    switch (callable->integer) {
    case PICKLE_ORDERED_DICT:
        if (args->n_items != 0) return pickle_error(vm, "collections.OrderedDict with arguments");
        *out = pv_new(vm, PV_DICT);
        return *out ? ZT_OK : ZT_ERR_NOMEM;
    case PICKLE_REBUILD_TENSOR_V2:
        return rebuild_tensor(vm, args, out);
    case PICKLE_REBUILD_PARAMETER:
        if (args->n_items != 3 || args->items[0]->kind != PV_TENSOR ||
            args->items[1]->kind != PV_BOOL || args->items[2]->kind != PV_DICT)
            return pickle_error(vm, "_rebuild_parameter's arguments are not (tensor, bool, dict)");
        *out = args->items[0];
        return ZT_OK;
    default:
        return pickle_error(vm, "calls torch.%s; storages come only from persistent ids",
                            global_name(callable->integer));
    }
}

static int plain_key(const char *key, size_t len) {
    if (len == 0 || len > PICKLE_MAX_KEY) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'z') ||
              (key[i] >= 'A' && key[i] <= 'Z') || key[i] == '_'))
            return 0;
    return 1;
}

zt_status pickle_persistent_load(pickle_vm *vm, const pv *pid, pv **out) {
    pv *const *a = pid->items;
    if (pid->kind != PV_TUPLE || pid->n_items != 5 || a[0]->kind != PV_STR ||
        !same_text(a[0]->text, a[0]->text_len, "storage") || a[1]->kind != PV_GLOBAL ||
        a[1]->integer < 0 || a[2]->kind != PV_STR || a[3]->kind != PV_STR || a[4]->kind != PV_INT)
        return pickle_error(vm, "persistent id is not ('storage', torch.<type>Storage, key, "
                                "location, numel)");
    const storage_type *type = &pickle_storage_types[a[1]->integer];
    if (!plain_key(a[2]->text, a[2]->text_len))
        return pickle_error(vm, "storage key is not 1 to %d letters, digits or '_'",
                            PICKLE_MAX_KEY);
    if (a[4]->integer < 0 || (uint64_t)a[4]->integer > INT64_MAX / (uint64_t)type->element_bytes)
        return pickle_error(vm, "storage '%.*s' has an impossible size of %lld elements",
                            (int)a[2]->text_len, a[2]->text, (long long)a[4]->integer);
    size_t index = 0;
    while (index < vm->n_storages &&
           !same_text(a[2]->text, a[2]->text_len, vm->storages[index].key))
        index++;
    if (index < vm->n_storages) {
        const zt_pickle_storage *seen = &vm->storages[index];
        if (strcmp(seen->dtype, type->dtype) != 0 || seen->numel != (uint64_t)a[4]->integer)
            return pickle_error(vm,
                                "storage '%s' appears as %llu %s elements and as %lld %s elements",
                                seen->key, (unsigned long long)seen->numel, seen->dtype,
                                (long long)a[4]->integer, type->dtype);
    } else {
        if (index >= INT32_MAX ||
            !pickle_grow(&vm->storages, &vm->cap_storages, index + 1, sizeof *vm->storages))
            return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
        zt_pickle_storage *storage = &vm->storages[index];
        storage->key = zt_malloc(a[2]->text_len + 1);
        if (!storage->key) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
        memcpy(storage->key, a[2]->text, a[2]->text_len);
        storage->key[a[2]->text_len] = '\0';
        storage->dtype = type->dtype;
        storage->element_bytes = type->element_bytes;
        storage->numel = (uint64_t)a[4]->integer;
        vm->n_storages++;
    }
    pv *value = pv_new(vm, PV_STORAGE);
    if (!value) return ZT_ERR_NOMEM;
    value->integer = (int64_t)index;
    *out = value;
    return ZT_OK;
}

/* An OrderedDict's state is its instance dict (a state_dict's _metadata: module versions),
 * which says nothing about the tensors, so it is checked for shape and dropped. */
zt_status pickle_build(const pickle_vm *vm, const pv *object, const pv *state) {
    if (object->kind != PV_DICT || (state->kind != PV_DICT && state->kind != PV_NONE))
        return pickle_error(vm, "BUILD of a %s with a %s; only an OrderedDict's attributes are set",
                            pv_kind_name(object->kind), pv_kind_name(state->kind));
    return ZT_OK;
}

zt_status pickle_collect(pickle_vm *vm, const pv *root, zt_pickle_state_dict *out) {
    if (root->kind != PV_DICT)
        return zt_fail(ZT_ERR_FORMAT, "%s: the pickle holds a %s, not a state dict", vm->what,
                       pv_kind_name(root->kind));
    size_t n = root->n_items / 2;
    if (n > INT32_MAX) return zt_fail(ZT_ERR_FORMAT, "%s: too many tensors", vm->what);
    out->tensors = zt_calloc(n + 1, sizeof *out->tensors);
    if (!out->tensors) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
    for (size_t i = 0; i < n; i++) {
        const pv *key = root->items[2 * i], *value = root->items[2 * i + 1];
        if (key->kind != PV_STR)
            return zt_fail(ZT_ERR_FORMAT, "%s: state dict entry %zu has a %s for a name", vm->what,
                           i, pv_kind_name(key->kind));
        if (key->text_len == 0 || key->text_len > PICKLE_MAX_TENSOR_NAME ||
            memchr(key->text, 0, key->text_len) ||
            zt_st_utf8_invalid_at((const uint8_t *)key->text, key->text_len) != key->text_len)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: state dict entry %zu's name is empty, longer than %d bytes, "
                           "holds a NUL or is not UTF-8",
                           vm->what, i, PICKLE_MAX_TENSOR_NAME);
        zt_pickle_tensor *tensor = &out->tensors[out->n_tensors];
        tensor->name = zt_malloc(key->text_len + 1);
        if (!tensor->name) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
        memcpy(tensor->name, key->text, key->text_len);
        tensor->name[key->text_len] = '\0';
        out->n_tensors++;
        if (value->kind != PV_TENSOR)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: state dict entry '%s' holds a value of type %s, not a tensor",
                           vm->what, tensor->name, pv_kind_name(value->kind));
        char *name = tensor->name;
        *tensor = vm->tensors[value->integer];
        tensor->name = name;
    }
    out->storages = vm->storages;
    out->n_storages = (int)vm->n_storages;
    vm->storages = NULL;
    vm->n_storages = 0;
    return ZT_OK;
}
