//! `setjmp`/`longjmp` for libtpms's fatal-error path: `ExecuteCommand` calls `_setjmp`, and
//! `TpmFail` `longjmp`s back to it (then the command returns TPM_RC_FAILURE and the TPM stays in
//! failure mode). The `jmp_buf` layout is glibc's first eight words: rbx, rbp, r12, r13, r14,
//! r15, rsp, rip (no pointer mangling: only these two functions read it). The signal mask is
//! not saved (`_setjmp`/`_longjmp` semantics; there are no signals).

core::arch::global_asm!(
    ".text",
    ".global _setjmp",
    ".type _setjmp, @function",
    "_setjmp:",
    "    mov [rdi], rbx",
    "    mov [rdi + 8], rbp",
    "    mov [rdi + 16], r12",
    "    mov [rdi + 24], r13",
    "    mov [rdi + 32], r14",
    "    mov [rdi + 40], r15",
    "    lea rdx, [rsp + 8]", // the caller's rsp after `ret`
    "    mov [rdi + 48], rdx",
    "    mov rdx, [rsp]", // the return address
    "    mov [rdi + 56], rdx",
    "    xor eax, eax",
    "    ret",
    ".size _setjmp, . - _setjmp",
    "",
    ".global _longjmp",
    ".type _longjmp, @function",
    ".global __longjmp_chk",
    ".type __longjmp_chk, @function",
    "_longjmp:",
    "__longjmp_chk:",
    "    mov eax, esi", // setjmp's second return value: val, or 1 if val is 0
    "    test eax, eax",
    "    jnz 2f",
    "    inc eax",
    "2:",
    "    mov rbx, [rdi]",
    "    mov rbp, [rdi + 8]",
    "    mov r12, [rdi + 16]",
    "    mov r13, [rdi + 24]",
    "    mov r14, [rdi + 32]",
    "    mov r15, [rdi + 40]",
    "    mov rsp, [rdi + 48]",
    "    jmp qword ptr [rdi + 56]",
    ".size _longjmp, . - _longjmp",
);
