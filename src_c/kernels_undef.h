/* Undefines what isa.h and kernels.h defined for one element type (see kernels.h). */
#undef FG_T
#undef FG_IS_F32
#undef FG_FN
#undef FG_VL
#undef FG_V
#undef FG_VI
#undef FG_SPLAT
#undef FG_SIGNMASK
#undef FG_AI
#undef FG_MRMAX
#undef FG_NVMAX
