/* The guest binary (built from hv-glue/kvm/guest/), embedded in libmigr. */
    .section .rodata
    .global migr_guest_blob, migr_guest_blob_end
    .balign 4096
migr_guest_blob:
    .incbin "guest.bin"
migr_guest_blob_end:
    .section .note.GNU-stack,"",@progbits
