// SPDX-License-Identifier: MPL-2.0
//! A system-memory allocator that counts how often its memory is mapped, to
//! prove that an element passes memory on without ever looking inside it, and
//! how often it is copied by its own copy function (as CUDA or DMABuf
//! allocators copy without a CPU map).

use gst::glib;
use gst::glib::translate::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::alloc::Layout;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

glib::wrapper! {
    pub struct CountingAllocator(ObjectSubclass<imp::CountingAllocator>) @extends gst::Allocator, gst::Object;
}

impl Default for CountingAllocator {
    fn default() -> Self {
        glib::Object::new()
    }
}

impl CountingAllocator {
    /// How many times memory of this allocator was mapped.
    pub fn maps(&self) -> usize {
        self.imp().maps.load(Ordering::SeqCst)
    }

    /// How many times memory of this allocator was copied by it.
    pub fn copies(&self) -> usize {
        self.imp().copies.load(Ordering::SeqCst)
    }

    pub fn memory(&self, size: usize) -> gst::Memory {
        self.alloc(size, None).unwrap()
    }
}

mod imp {
    use super::*;

    /// The GstMemory header followed by where its bytes live.
    #[repr(C)]
    struct CountedMemory {
        memory: gst::ffi::GstMemory,
        data: *mut u8,
        data_layout: Layout,
    }

    const HEADER: Layout = Layout::new::<CountedMemory>();

    #[derive(Default)]
    pub struct CountingAllocator {
        pub(super) maps: AtomicUsize,
        pub(super) copies: AtomicUsize,
    }

    impl ObjectImpl for CountingAllocator {}
    impl GstObjectImpl for CountingAllocator {}

    // SAFETY: alloc returns a GstMemory initialized with gst_memory_init whose
    // header is followed by the fields free() reads back.
    unsafe impl AllocatorImpl for CountingAllocator {
        unsafe fn alloc(
            &self,
            size: usize,
            _params: &gst::AllocationParams,
        ) -> *mut gst::ffi::GstMemory {
            let data_layout = Layout::from_size_align(size.max(1), 16).unwrap();
            unsafe {
                let mem = std::alloc::alloc(HEADER) as *mut CountedMemory;
                let data = std::alloc::alloc_zeroed(data_layout);
                gst::ffi::gst_memory_init(
                    ptr::addr_of_mut!((*mem).memory),
                    0,
                    self.obj().as_ptr() as *mut gst::ffi::GstAllocator,
                    ptr::null_mut(),
                    size,
                    0,
                    0,
                    size,
                );
                ptr::write(ptr::addr_of_mut!((*mem).data), data);
                ptr::write(ptr::addr_of_mut!((*mem).data_layout), data_layout);
                mem as *mut gst::ffi::GstMemory
            }
        }

        unsafe fn free(&self, memory: *mut gst::ffi::GstMemory) {
            unsafe {
                let mem = memory as *mut CountedMemory;
                std::alloc::dealloc((*mem).data, (*mem).data_layout);
                std::alloc::dealloc(mem as *mut u8, HEADER);
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for CountingAllocator {
        const NAME: &'static str = "EdgeguardTestCountingAllocator";
        type Type = super::CountingAllocator;
        type ParentType = gst::Allocator;

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            static MEM_TYPE: &[u8] = b"EdgeguardCountedMemory\0";
            unsafe {
                let allocator = obj.as_ptr() as *mut gst::ffi::GstAllocator;
                (*allocator).mem_type = MEM_TYPE.as_ptr() as *const _;
                (*allocator).mem_map = Some(mem_map);
                (*allocator).mem_unmap = Some(mem_unmap);
                // No sharing: a share attempt fails (returns NULL) instead of
                // silently working, which the tests would also notice.
                (*allocator).mem_share = Some(mem_share);
                (*allocator).mem_copy = Some(mem_copy);
            }
        }
    }

    unsafe extern "C" fn mem_map(
        memory: *mut gst::ffi::GstMemory,
        _maxsize: usize,
        _flags: gst::ffi::GstMapFlags,
    ) -> glib::ffi::gpointer {
        unsafe {
            let allocator: Borrowed<gst::Allocator> = from_glib_borrow((*memory).allocator);
            if let Some(counting) = allocator.downcast_ref::<super::CountingAllocator>() {
                counting.imp().maps.fetch_add(1, Ordering::SeqCst);
            }
            (*(memory as *mut CountedMemory)).data as glib::ffi::gpointer
        }
    }

    /// Copies without mapping, so that a map count of 0 proves a copy came here.
    unsafe extern "C" fn mem_copy(
        memory: *mut gst::ffi::GstMemory,
        offset: isize,
        size: isize,
    ) -> *mut gst::ffi::GstMemory {
        unsafe {
            let allocator: Borrowed<gst::Allocator> = from_glib_borrow((*memory).allocator);
            let counting = allocator
                .downcast_ref::<super::CountingAllocator>()
                .unwrap();
            counting.imp().copies.fetch_add(1, Ordering::SeqCst);
            let offset = (*memory).offset + offset as usize;
            let size = if size < 0 {
                (*memory).size + (*memory).offset - offset
            } else {
                size as usize
            };
            let copy = counting.memory(size).into_glib_ptr();
            ptr::copy_nonoverlapping(
                (*(memory as *mut CountedMemory)).data.add(offset),
                (*(copy as *mut CountedMemory)).data,
                size,
            );
            copy
        }
    }

    unsafe extern "C" fn mem_unmap(_memory: *mut gst::ffi::GstMemory) {}

    unsafe extern "C" fn mem_share(
        _memory: *mut gst::ffi::GstMemory,
        _offset: isize,
        _size: isize,
    ) -> *mut gst::ffi::GstMemory {
        ptr::null_mut()
    }
}
