/* The opcode interpreter of the restricted unpickler (pickle_read.h): the stack, marks and memo
 * of Python's pickle machine for the opcodes torch.save's data.pkl uses (protocol 2, plus the
 * protocol 4 framing and memo opcodes). Every read is bounds-checked; stack, marks and memo have
 * fixed limits far above what a state dict needs, so a hostile file cannot make it allocate
 * without bound. What the allowed globals do is pickle_torch.c's business. */
#include "io/pickle_internal.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

enum {
    PICKLE_MAX_STACK = 1 << 20,
    PICKLE_MAX_MARKS = 1 << 16,
    PICKLE_MAX_MEMO = 1 << 22,
    PICKLE_MAX_GLOBAL_NAME = 256,
};

zt_status pickle_error(const pickle_vm *vm, const char *fmt, ...) {
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    return zt_fail(ZT_ERR_FORMAT, "%s: byte %zu: %s", vm->what, vm->op_at, message);
}

int pickle_grow(void *array, size_t *cap, size_t need, size_t element) {
    if (need <= *cap) return 1;
    size_t grown = *cap ? *cap : 8;
    while (grown < need)
        grown *= 2;
    void *bigger = zt_realloc(*(void **)array, grown * element);
    if (!bigger) return 0;
    *(void **)array = bigger;
    *cap = grown;
    return 1;
}

pv *pv_new(pickle_vm *vm, pv_kind kind) {
    pv *value = zt_calloc(1, sizeof *value);
    if (!value || !pickle_grow(&vm->all, &vm->cap_all, vm->n_all + 1, sizeof *vm->all)) {
        free(value);
        zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
        return NULL;
    }
    value->kind = kind;
    vm->all[vm->n_all++] = value;
    return value;
}

const char *pv_kind_name(pv_kind kind) {
    static const char *const names[] = {"None", "bool", "int",    "str",     "tuple",
                                        "list", "dict", "global", "storage", "tensor"};
    return names[kind];
}

static void vm_free(pickle_vm *vm) {
    for (size_t i = 0; i < vm->n_all; i++) {
        free(vm->all[i]->items);
        free(vm->all[i]);
    }
    free(vm->all);
    free(vm->stack);
    free(vm->marks);
    free(vm->memo);
    for (size_t i = 0; i < vm->n_storages; i++)
        free(vm->storages[i].key);
    free(vm->storages);
    free(vm->tensors);
}

/* ---- reading operands ---- */

static zt_status vm_take(pickle_vm *vm, size_t count, const uint8_t **out) {
    if (count > vm->n - vm->pos)
        return pickle_error(vm, "the pickle ends inside an operand (%zu bytes needed, %zu left)",
                            count, vm->n - vm->pos);
    *out = vm->bytes + vm->pos;
    vm->pos += count;
    return ZT_OK;
}

static zt_status vm_read_uint(pickle_vm *vm, int bytes, uint64_t *out) {
    const uint8_t *p = NULL;
    ZT_TRY(vm_take(vm, (size_t)bytes, &p));
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--)
        value = value << 8 | p[i];
    *out = value;
    return ZT_OK;
}

/* A GLOBAL operand line: printable ASCII up to '\n'. */
static zt_status vm_read_line(pickle_vm *vm, const char **text, size_t *len) {
    size_t start = vm->pos, limit = vm->n - start;
    if (limit > PICKLE_MAX_GLOBAL_NAME) limit = PICKLE_MAX_GLOBAL_NAME;
    const uint8_t *newline = memchr(vm->bytes + start, '\n', limit);
    if (!newline) return pickle_error(vm, "GLOBAL name is not a line of at most 256 bytes");
    *text = (const char *)vm->bytes + start;
    *len = (size_t)(newline - (vm->bytes + start));
    for (size_t i = 0; i < *len; i++)
        if ((*text)[i] < 0x21 || (*text)[i] > 0x7e)
            return pickle_error(vm, "GLOBAL name holds byte 0x%02x", (unsigned)(uint8_t)(*text)[i]);
    vm->pos += *len + 1;
    return ZT_OK;
}

/* ---- stack, marks, memo ---- */

static zt_status vm_push(pickle_vm *vm, pv *value) {
    if (!value) return ZT_ERR_NOMEM;
    if (vm->n_stack >= PICKLE_MAX_STACK)
        return pickle_error(vm, "stack deeper than %d values", PICKLE_MAX_STACK);
    if (!pickle_grow(&vm->stack, &vm->cap_stack, vm->n_stack + 1, sizeof *vm->stack))
        return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
    vm->stack[vm->n_stack++] = value;
    return ZT_OK;
}

/* The value below the innermost mark must not be popped by a plain pop. */
static size_t vm_floor(const pickle_vm *vm) {
    return vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
}

static zt_status vm_pop(pickle_vm *vm, pv **out) {
    if (vm->n_stack <= vm_floor(vm)) return pickle_error(vm, "pops an empty stack");
    *out = vm->stack[--vm->n_stack];
    return ZT_OK;
}

static zt_status vm_top(pickle_vm *vm, pv **out) {
    if (vm->n_stack <= vm_floor(vm)) return pickle_error(vm, "reads an empty stack");
    *out = vm->stack[vm->n_stack - 1];
    return ZT_OK;
}

/* The values above the innermost mark (*items points into the stack, valid until the next
 * push); the mark and those values are removed. */
static zt_status vm_pop_mark(pickle_vm *vm, pv ***items, size_t *count) {
    if (vm->n_marks == 0) return pickle_error(vm, "needs a MARK and there is none");
    size_t mark = vm->marks[--vm->n_marks];
    *items = vm->stack ? vm->stack + mark : NULL; /* a MARK before any push leaves no stack */
    *count = vm->n_stack - mark;
    vm->n_stack = mark;
    return ZT_OK;
}

static zt_status vm_tuple(pickle_vm *vm, pv *const *items, size_t count) {
    pv *tuple = pv_new(vm, PV_TUPLE);
    if (!tuple) return ZT_ERR_NOMEM;
    if (count) {
        tuple->items = zt_malloc(count * sizeof *tuple->items);
        if (!tuple->items) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
        memcpy(tuple->items, items, count * sizeof *items);
        tuple->n_items = tuple->cap_items = count;
    }
    return vm_push(vm, tuple);
}

static zt_status vm_tuple_of_top(pickle_vm *vm, size_t count) {
    if (vm->n_stack - vm_floor(vm) < count)
        return pickle_error(vm, "TUPLE%zu with fewer values on the stack", count);
    vm->n_stack -= count;
    return vm_tuple(vm, vm->stack + vm->n_stack, count);
}

static zt_status vm_extend(pickle_vm *vm, pv *target, pv_kind kind, pv *const *items,
                           size_t count) {
    if (target->kind != kind)
        return pickle_error(vm, "adds items to a %s, not a %s", pv_kind_name(target->kind),
                            pv_kind_name(kind));
    if (kind == PV_DICT && count % 2)
        return pickle_error(vm, "SETITEMS with an odd number of values");
    if (!pickle_grow(&target->items, &target->cap_items, target->n_items + count,
                     sizeof *target->items))
        return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
    if (count) memcpy(target->items + target->n_items, items, count * sizeof *items);
    target->n_items += count;
    return ZT_OK;
}

static zt_status vm_put(pickle_vm *vm, uint64_t index) {
    pv *top = NULL;
    ZT_TRY(vm_top(vm, &top));
    if (index >= PICKLE_MAX_MEMO)
        return pickle_error(vm, "memo index %llu past the limit of %d", (unsigned long long)index,
                            PICKLE_MAX_MEMO);
    size_t old_cap = vm->cap_memo;
    if (!pickle_grow(&vm->memo, &vm->cap_memo, (size_t)index + 1, sizeof *vm->memo))
        return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
    memset(vm->memo + old_cap, 0, (vm->cap_memo - old_cap) * sizeof *vm->memo);
    if (!vm->memo[index]) vm->memo_len++;
    vm->memo[index] = top;
    return ZT_OK;
}

static zt_status vm_get(pickle_vm *vm, uint64_t index) {
    if (index >= vm->cap_memo || !vm->memo[index])
        return pickle_error(vm, "memo index %llu was never set", (unsigned long long)index);
    return vm_push(vm, vm->memo[index]);
}

/* ---- the opcodes ---- */

static zt_status vm_push_int(pickle_vm *vm, int64_t value) {
    pv *v = pv_new(vm, PV_INT);
    if (v) v->integer = value;
    return vm_push(vm, v);
}

static zt_status vm_push_str(pickle_vm *vm, int length_bytes) {
    uint64_t length = 0;
    const uint8_t *text = NULL;
    ZT_TRY(vm_read_uint(vm, length_bytes, &length));
    if (length > vm->n - vm->pos)
        return pickle_error(vm, "string of %llu bytes runs past the end of the pickle",
                            (unsigned long long)length);
    ZT_TRY(vm_take(vm, (size_t)length, &text));
    pv *v = pv_new(vm, PV_STR);
    if (v) v->text = (const char *)text, v->text_len = (size_t)length;
    return vm_push(vm, v);
}

/* LONG1: a little-endian two's-complement integer of up to 8 bytes (wider ones are refused). */
static zt_status vm_push_long1(pickle_vm *vm) {
    uint64_t width = 0, raw = 0;
    ZT_TRY(vm_read_uint(vm, 1, &width));
    if (width > 8)
        return pickle_error(vm, "LONG1 of %u bytes: wider than 64 bits", (unsigned)width);
    if (width) ZT_TRY(vm_read_uint(vm, (int)width, &raw));
    if (width && width < 8 && (raw >> (8 * width - 1)) & 1) raw |= ~0ull << (8 * width);
    return vm_push_int(vm, (int64_t)raw);
}

static zt_status vm_global(pickle_vm *vm, bool from_stack) {
    const char *module = NULL, *name = NULL;
    size_t module_len = 0, name_len = 0;
    if (from_stack) {
        pv *name_value = NULL, *module_value = NULL;
        ZT_TRY(vm_pop(vm, &name_value));
        ZT_TRY(vm_pop(vm, &module_value));
        if (name_value->kind != PV_STR || module_value->kind != PV_STR)
            return pickle_error(vm, "STACK_GLOBAL of a %s and a %s, not two strings",
                                pv_kind_name(module_value->kind), pv_kind_name(name_value->kind));
        module = module_value->text, module_len = module_value->text_len;
        name = name_value->text, name_len = name_value->text_len;
    } else {
        ZT_TRY(vm_read_line(vm, &module, &module_len));
        ZT_TRY(vm_read_line(vm, &name, &name_len));
    }
    pv *global = NULL;
    ZT_TRY(pickle_global(vm, module, module_len, name, name_len, &global));
    return vm_push(vm, global);
}

static zt_status vm_step(pickle_vm *vm, uint8_t op, bool *stopped) {
    pv *a = NULL, *b = NULL, *result = NULL, **items = NULL;
    size_t count = 0;
    uint64_t operand = 0;
    switch (op) {
    case 0x80: /* PROTO */
        ZT_TRY(vm_read_uint(vm, 1, &operand));
        if (operand < 2 || operand > 5)
            return pickle_error(vm, "pickle protocol %u (2 to 5 are read)", (unsigned)operand);
        return ZT_OK;
    case 0x95: /* FRAME: a length prefix for buffering, no meaning of its own */
        ZT_TRY(vm_read_uint(vm, 8, &operand));
        if (operand > vm->n - vm->pos) return pickle_error(vm, "FRAME runs past the end");
        return ZT_OK;
    case '.': /* STOP */
        *stopped = true;
        return ZT_OK;
    case '(': /* MARK */
        if (vm->n_marks >= PICKLE_MAX_MARKS)
            return pickle_error(vm, "more than %d nested MARKs", PICKLE_MAX_MARKS);
        if (!pickle_grow(&vm->marks, &vm->cap_marks, vm->n_marks + 1, sizeof *vm->marks))
            return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", vm->what);
        vm->marks[vm->n_marks++] = vm->n_stack;
        return ZT_OK;
    case '}':
        return vm_push(vm, pv_new(vm, PV_DICT)); /* EMPTY_DICT */
    case ']':
        return vm_push(vm, pv_new(vm, PV_LIST)); /* EMPTY_LIST */
    case ')':
        return vm_push(vm, pv_new(vm, PV_TUPLE)); /* EMPTY_TUPLE */
    case 'N':
        return vm_push(vm, pv_new(vm, PV_NONE)); /* NONE */
    case 0x88:
    case 0x89: { /* NEWTRUE, NEWFALSE */
        pv *v = pv_new(vm, PV_BOOL);
        if (v) v->integer = op == 0x88;
        return vm_push(vm, v);
    }
    case 't': /* TUPLE */
        ZT_TRY(vm_pop_mark(vm, &items, &count));
        return vm_tuple(vm, items, count);
    case 0x85:
    case 0x86:
    case 0x87: /* TUPLE1, TUPLE2, TUPLE3 */
        return vm_tuple_of_top(vm, (size_t)(op - 0x84));
    case 'X':
        return vm_push_str(vm, 4); /* BINUNICODE */
    case 0x8c:
        return vm_push_str(vm, 1); /* SHORT_BINUNICODE */
    case 0x8d:
        return vm_push_str(vm, 8); /* BINUNICODE8 */
    case 'J':                      /* BININT: signed 32-bit */
        ZT_TRY(vm_read_uint(vm, 4, &operand));
        return vm_push_int(vm, (int64_t)(int32_t)(uint32_t)operand);
    case 'K':
    case 'M': /* BININT1, BININT2: unsigned */
        ZT_TRY(vm_read_uint(vm, op == 'K' ? 1 : 2, &operand));
        return vm_push_int(vm, (int64_t)operand);
    case 0x8a:
        return vm_push_long1(vm); /* LONG1 */
    case 'c':
        return vm_global(vm, false); /* GLOBAL */
    case 0x93:
        return vm_global(vm, true); /* STACK_GLOBAL */
    case 'R':                       /* REDUCE */
        ZT_TRY(vm_pop(vm, &b));
        ZT_TRY(vm_pop(vm, &a));
        ZT_TRY(pickle_reduce(vm, a, b, &result));
        return vm_push(vm, result);
    case 'b': /* BUILD */
        ZT_TRY(vm_pop(vm, &b));
        ZT_TRY(vm_top(vm, &a));
        return pickle_build(vm, a, b);
    case 'Q': /* BINPERSID */
        ZT_TRY(vm_pop(vm, &a));
        ZT_TRY(pickle_persistent_load(vm, a, &result));
        return vm_push(vm, result);
    case 'q':
    case 'r': /* BINPUT, LONG_BINPUT */
        ZT_TRY(vm_read_uint(vm, op == 'q' ? 1 : 4, &operand));
        return vm_put(vm, operand);
    case 0x94:
        return vm_put(vm, vm->memo_len); /* MEMOIZE */
    case 'h':
    case 'j': /* BINGET, LONG_BINGET */
        ZT_TRY(vm_read_uint(vm, op == 'h' ? 1 : 4, &operand));
        return vm_get(vm, operand);
    case 's':
    case 'a': /* SETITEM, APPEND */
        count = op == 's' ? 2 : 1;
        if (vm->n_stack - vm_floor(vm) < count + 1)
            return pickle_error(vm, "%s with too few values on the stack",
                                op == 's' ? "SETITEM" : "APPEND");
        vm->n_stack -= count;
        return vm_extend(vm, vm->stack[vm->n_stack - 1], op == 's' ? PV_DICT : PV_LIST,
                         vm->stack + vm->n_stack, count);
    case 'u':
    case 'e': /* SETITEMS, APPENDS */
        ZT_TRY(vm_pop_mark(vm, &items, &count));
        ZT_TRY(vm_top(vm, &a));
        return vm_extend(vm, a, op == 'u' ? PV_DICT : PV_LIST, items, count);
    default:
        return pickle_error(vm,
                            "opcode 0x%02x ('%c') is not one a state dict uses; refusing the file",
                            op, op >= 0x21 && op <= 0x7e ? op : '?');
    }
}

zt_status zt_pickle_read_state_dict(const char *what, const uint8_t *bytes, size_t n,
                                    zt_pickle_state_dict *out) {
    memset(out, 0, sizeof *out);
    pickle_vm vm;
    memset(&vm, 0, sizeof vm);
    vm.what = what;
    vm.bytes = bytes;
    vm.n = n;
    zt_status status = ZT_OK;
    bool stopped = false;
    while (status == ZT_OK && !stopped) {
        vm.op_at = vm.pos;
        if (vm.pos >= vm.n) {
            status = pickle_error(&vm, "the pickle ends without STOP");
            break;
        }
        status = vm_step(&vm, vm.bytes[vm.pos++], &stopped);
    }
    if (status == ZT_OK && (vm.n_stack != 1 || vm.n_marks != 0))
        status = pickle_error(&vm, "STOP leaves %zu values and %zu marks; one value expected",
                              vm.n_stack, vm.n_marks);
    if (status == ZT_OK && vm.pos != vm.n)
        status = pickle_error(&vm, "%zu bytes follow STOP", vm.n - vm.pos);
    if (status == ZT_OK) status = pickle_collect(&vm, vm.stack[0], out);
    if (status != ZT_OK) zt_pickle_state_dict_free(out);
    vm_free(&vm);
    return status;
}

void zt_pickle_state_dict_free(zt_pickle_state_dict *sd) {
    if (!sd) return;
    for (int i = 0; i < sd->n_tensors; i++)
        free(sd->tensors[i].name);
    free(sd->tensors);
    for (int i = 0; i < sd->n_storages; i++)
        free(sd->storages[i].key);
    free(sd->storages);
    memset(sd, 0, sizeof *sd);
}
